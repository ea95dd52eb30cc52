//! Registry files on disk (in progress).
