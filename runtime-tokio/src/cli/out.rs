//! Standard output for every command.
//!
//! `print!` panics when stdout is a closed pipe (`completion zsh | head`), because the Rust
//! runtime ignores SIGPIPE and the write returns EPIPE. Every command writes through [`write`]
//! instead: a closed reader is the reader's choice, so the command stops writing quietly and
//! keeps its own exit code. Any other write error is a failure (exit 1) with a message.

use std::io::ErrorKind;

use super::ExitCode;

/// Why text did not reach stdout.
#[derive(Debug)]
pub(crate) enum WriteError {
    /// Some other I/O error (disk full on a redirect, ...); already reported on stderr.
    Failed,
}

/// Writes `text` to stdout and flushes it.
///
/// # Errors
/// [`WriteError::Failed`] on any error except a closed pipe, which counts as written.
pub(crate) fn write(text: &str) -> Result<(), WriteError> {
    write_to(&mut std::io::stdout().lock(), text.as_bytes())
}

/// [`write`] into any writer (tests use a writer that fails like a closed pipe).
fn write_to(writer: &mut dyn std::io::Write, bytes: &[u8]) -> Result<(), WriteError> {
    match writer.write_all(bytes).and_then(|()| writer.flush()) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == ErrorKind::BrokenPipe => Ok(()),
        Err(error) => {
            eprintln!("cannot write to standard output: {error}");
            Err(WriteError::Failed)
        }
    }
}

/// Writes `text` followed by a newline, returning `code` or [`ExitCode::Failure`] when stdout
/// failed.
pub(crate) fn line_then(text: &str, code: ExitCode) -> ExitCode {
    let mut owned = String::with_capacity(text.len() + 1);
    owned.push_str(text);
    if !owned.ends_with('\n') {
        owned.push('\n');
    }
    text_then(&owned, code)
}

/// Writes `text` as it is, returning `code` or [`ExitCode::Failure`] when stdout failed.
pub(crate) fn text_then(text: &str, code: ExitCode) -> ExitCode {
    match write(text) {
        Ok(()) => code,
        Err(WriteError::Failed) => ExitCode::Failure,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Failing(ErrorKind);

    impl std::io::Write for Failing {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(self.0.into())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_closed_pipe_counts_as_written_and_other_errors_fail() {
        assert!(write_to(&mut Failing(ErrorKind::BrokenPipe), b"x").is_ok());
        assert!(write_to(&mut Failing(ErrorKind::StorageFull), b"x").is_err());
    }
}
