//! The KMS Unix socket: checks before binding, stale-socket removal, binding with the configured
//! mode and group, removal on shutdown, and systemd readiness notifications.
//!
//! `serve` calls [`prepare`] (blocking) and then [`bind`] only once the data path is verified,
//! so the socket is never exposed early. [`bind`] sets the mode and group before the socket
//! listens: until then a connection is refused, so nobody can connect through a mode the umask
//! chose.

use std::fs::{self, Metadata, Permissions};
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::{Component, Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::Duration;

use tokio::net::{UnixListener, UnixSocket};

/// How long [`prepare`] waits for a connection to an existing socket before it gives up.
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(250);

/// Mode bits the socket must not have: execute bits and any access for others.
pub const MODE_FORBIDDEN_BITS: u32 = 0o117;

/// Mode bits the socket's directory must not have: group or world write.
pub const DIR_FORBIDDEN_BITS: u32 = 0o022;

/// The listen backlog of the KMS socket.
const BACKLOG: u32 = 1024;

/// Where the socket goes and who may use it.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct SocketPolicy {
    /// The socket's absolute path.
    pub path: PathBuf,
    /// Its permission bits, such as `0o660`; none of [`MODE_FORBIDDEN_BITS`].
    pub mode: u32,
    /// Its group: a name from `/etc/group` or a decimal gid; `None` keeps the process's group.
    pub group: Option<String>,
    /// The directories the socket may live in; the socket's parent must be one of them.
    pub approved_dirs: Vec<PathBuf>,
}

/// What [`prepare`] found at the socket path.
#[derive(Clone, Copy, Debug, Eq, Hash, PartialEq)]
pub enum Prepared {
    /// Nothing: the path is free.
    Absent,
    /// A socket nobody listens on (a crash leftover): it was removed. Count it in
    /// `openbao_kms_socket_restarts_total`.
    StaleRemoved,
}

/// Why the socket cannot be prepared or bound.
///
/// Messages name local paths; keep them out of anything a gRPC client can see.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    /// The socket path is relative.
    #[error("socket path {} must be absolute", path.display())]
    NotAbsolute {
        /// The path.
        path: PathBuf,
    },
    /// The socket path is malformed.
    #[error("socket path {} {reason}", path.display())]
    InvalidPath {
        /// The path.
        path: PathBuf,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The socket's directory is not one of the approved directories.
    #[error("socket directory {} is not one of the approved socket directories", dir.display())]
    NotApproved {
        /// The directory.
        dir: PathBuf,
    },
    /// The socket's directory is a symbolic link.
    #[error("socket directory {} must not be a symbolic link", dir.display())]
    ParentSymlink {
        /// The directory.
        dir: PathBuf,
    },
    /// The socket's parent is not a directory.
    #[error("socket directory {} is not a directory", dir.display())]
    ParentNotDirectory {
        /// The path.
        dir: PathBuf,
    },
    /// The socket's directory is group- or world-writable.
    #[error(
        "socket directory {} has mode {mode:04o}; it must not be group- or world-writable",
        dir.display()
    )]
    ParentUnsafeMode {
        /// The directory.
        dir: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The socket's directory belongs to another user.
    #[error(
        "socket directory {} is owned by uid {uid}, not by the effective uid {euid}",
        dir.display()
    )]
    ParentWrongOwner {
        /// The directory.
        dir: PathBuf,
        /// Its owner.
        uid: u32,
        /// The process's effective uid.
        euid: u32,
    },
    /// A symbolic link sits at the socket path.
    #[error("{} is a symbolic link; refusing to replace it", path.display())]
    Symlink {
        /// The path.
        path: PathBuf,
    },
    /// Something other than a socket sits at the socket path.
    #[error("{} exists and is a {kind}, not a socket; refusing to replace it", path.display())]
    NotSocket {
        /// The path.
        path: PathBuf,
        /// What sits there.
        kind: &'static str,
    },
    /// Another process accepts connections on the socket.
    #[error("another process is serving on the socket; refusing to steal it ({})", path.display())]
    LiveSocket {
        /// The path.
        path: PathBuf,
    },
    /// The socket exists and its state could not be determined (permission denied, no answer
    /// in time, ...): fail closed.
    #[error(
        "cannot tell whether the socket {} is in use ({reason}); refusing to remove it",
        path.display()
    )]
    Indeterminate {
        /// The path.
        path: PathBuf,
        /// What happened.
        reason: String,
    },
    /// A socket mode string is not four octal digits starting with `0`.
    #[error("socket mode {value:?} must be four octal digits starting with 0, such as 0660")]
    InvalidMode {
        /// The string.
        value: String,
    },
    /// A socket mode has execute bits or access for others.
    #[error(
        "socket mode {mode:04o} must have none of the bits 0117 (execute, or any access for others)"
    )]
    ForbiddenModeBits {
        /// The mode.
        mode: u32,
    },
    /// The socket group is neither a known group name nor a decimal gid.
    #[error("socket group {group:?} is unknown")]
    UnknownGroup {
        /// The configured group.
        group: String,
    },
    /// A system call failed.
    #[error("{action} {}: {error}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// The error.
        error: io::Error,
    },
}

impl SocketError {
    fn io(action: &'static str, path: &Path, error: io::Error) -> Self {
        Self::Io {
            action,
            path: path.to_path_buf(),
            error,
        }
    }
}

/// Checks the socket path and clears a stale socket; blocking, call it before [`bind`].
///
/// - the path is absolute, without `.` or `..` components;
/// - its parent is not a symbolic link, is one of `approved_dirs` (compared by canonical path),
///   is a directory, has none of the mode bits `0022`, and is owned by the effective user;
/// - nothing at the path: [`Prepared::Absent`];
/// - a symbolic link, regular file, directory or anything else but a socket: refused;
/// - a socket: connected to, waiting at most [`PROBE_TIMEOUT`]. Connection refused means
///   nobody serves it: it is removed and [`Prepared::StaleRemoved`] returned. A connection
///   means a live peer: [`SocketError::LiveSocket`], and the socket is left alone. Anything
///   else (permission denied, no answer in time): [`SocketError::Indeterminate`], left alone.
pub fn prepare(policy: &SocketPolicy) -> Result<Prepared, SocketError> {
    let path = policy.path.as_path();
    let dir = parent_of(path)?;
    check_dir(dir, &policy.approved_dirs)?;
    let found = match fs::symlink_metadata(path) {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Prepared::Absent),
        Err(error) => return Err(SocketError::io("stat", path, error)),
    };
    let kind = found.file_type();
    if kind.is_symlink() {
        return Err(SocketError::Symlink {
            path: path.to_path_buf(),
        });
    }
    if !kind.is_socket() {
        return Err(SocketError::NotSocket {
            path: path.to_path_buf(),
            kind: kind_of(&found),
        });
    }
    match probe(path) {
        Probe::Live => Err(SocketError::LiveSocket {
            path: path.to_path_buf(),
        }),
        Probe::Refused => remove_stale(path, &found),
        Probe::Unknown(reason) => Err(SocketError::Indeterminate {
            path: path.to_path_buf(),
            reason,
        }),
    }
}

/// Binds the socket, sets its mode and group, and only then listens.
///
/// Call [`prepare`] first: binding fails when anything exists at the path. Must run inside a
/// tokio runtime. When setting the mode or group fails, the socket is removed again. Create the
/// [`SocketGuard`] right after this returns, so the socket is removed at shutdown.
pub fn bind(policy: &SocketPolicy) -> Result<UnixListener, SocketError> {
    let path = policy.path.as_path();
    check_mode_bits(policy.mode)?;
    let gid = policy.group.as_deref().map(resolve_group).transpose()?;
    let socket =
        UnixSocket::new_stream().map_err(|error| SocketError::io("create", path, error))?;
    socket
        .bind(path)
        .map_err(|error| SocketError::io("bind", path, error))?;
    // Removes the socket if anything below fails.
    let mut cleanup = SocketGuard::new(path)?;
    fs::set_permissions(path, Permissions::from_mode(policy.mode))
        .map_err(|error| SocketError::io("chmod", path, error))?;
    if let Some(gid) = gid {
        std::os::unix::fs::lchown(path, None, Some(gid))
            .map_err(|error| SocketError::io("chown", path, error))?;
    }
    match cleanup.is_ours() {
        Ok(true) => {}
        Ok(false) => {
            // Not ours any more: leave whatever is there alone.
            cleanup.armed = false;
            return Err(SocketError::Indeterminate {
                path: path.to_path_buf(),
                reason: "the socket was replaced while its mode was set".to_owned(),
            });
        }
        Err(error) => return Err(SocketError::io("stat", path, error)),
    }
    let listener = socket
        .listen(BACKLOG)
        .map_err(|error| SocketError::io("listen", path, error))?;
    cleanup.armed = false;
    Ok(listener)
}

/// Removes the bound socket when dropped, unless the path now holds another file.
///
/// It records the device and inode of the socket when created (right after [`bind`]) and unlinks the path only
/// while it is still that socket, so it never removes a successor's socket. Drop it while the
/// listener is still open (or right after): the open listener keeps the inode from being reused.
#[derive(Debug)]
pub struct SocketGuard {
    path: PathBuf,
    dev: u64,
    ino: u64,
    armed: bool,
}

impl SocketGuard {
    /// Guards the socket now at `path`, recording its device and inode; call it right after
    /// [`bind`]. Fails when the path does not hold a socket.
    pub fn new(path: &Path) -> Result<Self, SocketError> {
        let bound =
            fs::symlink_metadata(path).map_err(|error| SocketError::io("stat", path, error))?;
        if !bound.file_type().is_socket() {
            return Err(SocketError::Indeterminate {
                path: path.to_path_buf(),
                reason: "the path does not hold the bound socket".to_owned(),
            });
        }
        Ok(Self {
            path: path.to_path_buf(),
            dev: bound.dev(),
            ino: bound.ino(),
            armed: true,
        })
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Removes the socket now if the path still holds it; `Ok(false)` when it did not.
    pub fn remove(mut self) -> io::Result<bool> {
        self.unlink_if_ours()
    }

    fn is_ours(&self) -> io::Result<bool> {
        match fs::symlink_metadata(&self.path) {
            Ok(metadata) => Ok(metadata.file_type().is_socket()
                && metadata.dev() == self.dev
                && metadata.ino() == self.ino),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(error) => Err(error),
        }
    }

    fn unlink_if_ours(&mut self) -> io::Result<bool> {
        if !self.armed {
            return Ok(false);
        }
        self.armed = false;
        if !self.is_ours()? {
            return Ok(false);
        }
        match fs::remove_file(&self.path) {
            Ok(()) => Ok(true),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(error) => Err(error),
        }
    }
}

impl Drop for SocketGuard {
    fn drop(&mut self) {
        if let Err(error) = self.unlink_if_ours() {
            tracing::warn!(
                path = %self.path.display(),
                error = %error,
                "could not remove the KMS socket"
            );
        }
    }
}

/// Parses a socket mode such as `"0660"`: `^0[0-7]{3}$`, with none of the bits `0117`.
pub fn validate_mode_string(value: &str) -> Result<u32, SocketError> {
    let invalid = || SocketError::InvalidMode {
        value: value.to_owned(),
    };
    let digits = value
        .strip_prefix('0')
        .filter(|digits| digits.len() == 3 && digits.bytes().all(|b| (b'0'..=b'7').contains(&b)))
        .ok_or_else(invalid)?;
    let mode = u32::from_str_radix(digits, 8).map_err(|_| invalid())?;
    check_mode_bits(mode)?;
    Ok(mode)
}

/// Resolves `server.socketGroup`: a decimal gid as is, otherwise a name looked up in
/// `/etc/group` (only there: no NSS modules).
pub fn resolve_group(group: &str) -> Result<u32, SocketError> {
    if let Some(gid) = decimal_gid(group) {
        return gid;
    }
    let etc_group = Path::new("/etc/group");
    let contents =
        fs::read_to_string(etc_group).map_err(|error| SocketError::io("read", etc_group, error))?;
    resolve_group_in(group, &contents)
}

/// [`resolve_group`] with the contents of `/etc/group` given.
pub fn resolve_group_in(group: &str, etc_group: &str) -> Result<u32, SocketError> {
    if let Some(gid) = decimal_gid(group) {
        return gid;
    }
    let unknown = || SocketError::UnknownGroup {
        group: group.to_owned(),
    };
    if group.is_empty() {
        return Err(unknown());
    }
    etc_group
        .lines()
        .filter(|line| !line.starts_with('#') && !line.starts_with('+') && !line.starts_with('-'))
        .find_map(|line| {
            let mut fields = line.split(':');
            let name = fields.next()?;
            let _password = fields.next()?;
            let gid = fields.next()?;
            (name == group).then(|| gid.trim().parse::<u32>().ok())
        })
        .flatten()
        .filter(|gid| *gid != u32::MAX)
        .ok_or_else(unknown)
}

/// `Some` when `group` is all ASCII digits: the gid, or an error when it is out of range
/// (`u32::MAX` is `-1`, "no change", to `chown`).
fn decimal_gid(group: &str) -> Option<Result<u32, SocketError>> {
    if group.is_empty() || !group.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(
        group
            .parse::<u32>()
            .ok()
            .filter(|gid| *gid != u32::MAX)
            .ok_or_else(|| SocketError::UnknownGroup {
                group: group.to_owned(),
            }),
    )
}

/// Tells systemd the service is ready (`READY=1`) when `NOTIFY_SOCKET` is set.
///
/// `Ok(false)` when it is not set (or empty); `Ok(true)` once the message is sent.
pub fn notify_ready() -> io::Result<bool> {
    notify_ready_to(notify_socket_from_env()?.as_deref())
}

/// Tells systemd the service is stopping (`STOPPING=1`) when `NOTIFY_SOCKET` is set.
pub fn notify_stopping() -> io::Result<bool> {
    notify_stopping_to(notify_socket_from_env()?.as_deref())
}

/// [`notify_ready`] with the value of `NOTIFY_SOCKET` given: an absolute path, or `@name` for
/// an abstract socket (Linux).
pub fn notify_ready_to(socket: Option<&str>) -> io::Result<bool> {
    notify_to(socket, "READY=1")
}

/// [`notify_stopping`] with the value of `NOTIFY_SOCKET` given.
pub fn notify_stopping_to(socket: Option<&str>) -> io::Result<bool> {
    notify_to(socket, "STOPPING=1")
}

/// Sends `message` (one or more `KEY=value` lines, such as `STATUS=serving`) to systemd when
/// `NOTIFY_SOCKET` is set; `Ok(false)` when it is not.
pub fn notify(message: &str) -> io::Result<bool> {
    notify_to(notify_socket_from_env()?.as_deref(), message)
}

/// [`notify`] with the value of `NOTIFY_SOCKET` given.
pub fn notify_message_to(socket: Option<&str>, message: &str) -> io::Result<bool> {
    notify_to(socket, message)
}

/// The watchdog period systemd asks for: `WATCHDOG_USEC` microseconds, when set, positive, and
/// meant for this process (`WATCHDOG_PID` absent or equal to its pid).
pub fn watchdog_period() -> Option<Duration> {
    let usec = std::env::var("WATCHDOG_USEC").ok();
    let pid = std::env::var("WATCHDOG_PID").ok();
    watchdog_period_from(usec.as_deref(), pid.as_deref(), std::process::id())
}

/// [`watchdog_period`] with the variables and the process id given.
pub fn watchdog_period_from(
    usec: Option<&str>,
    pid: Option<&str>,
    own_pid: u32,
) -> Option<Duration> {
    if let Some(pid) = pid
        && pid.trim().parse::<u32>().ok() != Some(own_pid)
    {
        return None;
    }
    let usec: u64 = usec?.trim().parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec))
}

fn notify_socket_from_env() -> io::Result<Option<String>> {
    match std::env::var("NOTIFY_SOCKET") {
        Ok(value) => Ok(Some(value)),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "NOTIFY_SOCKET is not valid UTF-8",
        )),
    }
}

fn notify_to(socket: Option<&str>, message: &str) -> io::Result<bool> {
    let Some(socket) = socket.filter(|socket| !socket.is_empty()) else {
        return Ok(false);
    };
    let datagram = UnixDatagram::unbound()?;
    // A receiver that does not read must not block the caller (an async task, a watchdog):
    // a full queue is an error, reported and retried at the next notification.
    datagram.set_nonblocking(true)?;
    let sent = if let Some(name) = socket.strip_prefix('@') {
        send_abstract(&datagram, name, message)?
    } else if socket.starts_with('/') {
        datagram.send_to(message.as_bytes(), socket)?
    } else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "NOTIFY_SOCKET must be an absolute path or start with @",
        ));
    };
    if sent != message.len() {
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            "short write to NOTIFY_SOCKET",
        ));
    }
    Ok(true)
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn send_abstract(datagram: &UnixDatagram, name: &str, message: &str) -> io::Result<usize> {
    #[cfg(target_os = "android")]
    use std::os::android::net::SocketAddrExt;
    #[cfg(target_os = "linux")]
    use std::os::linux::net::SocketAddrExt;
    let address = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
    datagram.send_to_addr(message.as_bytes(), &address)
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn send_abstract(_datagram: &UnixDatagram, _name: &str, _message: &str) -> io::Result<usize> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "abstract NOTIFY_SOCKET addresses need Linux",
    ))
}

fn check_mode_bits(mode: u32) -> Result<(), SocketError> {
    if mode > 0o777 || mode & MODE_FORBIDDEN_BITS != 0 {
        return Err(SocketError::ForbiddenModeBits { mode });
    }
    Ok(())
}

/// The socket's parent, after checking the path's shape.
fn parent_of(path: &Path) -> Result<&Path, SocketError> {
    if !path.is_absolute() {
        return Err(SocketError::NotAbsolute {
            path: path.to_path_buf(),
        });
    }
    let invalid = |reason| SocketError::InvalidPath {
        path: path.to_path_buf(),
        reason,
    };
    if path
        .components()
        .any(|component| matches!(component, Component::CurDir | Component::ParentDir))
    {
        return Err(invalid("must not contain . or .. components"));
    }
    if path.file_name().is_none() {
        return Err(invalid("has no file name"));
    }
    path.parent()
        .ok_or_else(|| invalid("has no parent directory"))
}

/// Checks the socket's directory: not a symbolic link, approved, a directory, not group- or
/// world-writable, owned by the effective user.
fn check_dir(dir: &Path, approved: &[PathBuf]) -> Result<(), SocketError> {
    let metadata =
        fs::symlink_metadata(dir).map_err(|error| SocketError::io("stat", dir, error))?;
    if metadata.file_type().is_symlink() {
        return Err(SocketError::ParentSymlink {
            dir: dir.to_path_buf(),
        });
    }
    let canonical =
        fs::canonicalize(dir).map_err(|error| SocketError::io("resolve", dir, error))?;
    let approved = approved
        .iter()
        .any(|candidate| fs::canonicalize(candidate).is_ok_and(|resolved| resolved == canonical));
    if !approved {
        return Err(SocketError::NotApproved {
            dir: dir.to_path_buf(),
        });
    }
    if !metadata.is_dir() {
        return Err(SocketError::ParentNotDirectory {
            dir: dir.to_path_buf(),
        });
    }
    let mode = metadata.mode() & 0o7777;
    if mode & DIR_FORBIDDEN_BITS != 0 {
        return Err(SocketError::ParentUnsafeMode {
            dir: dir.to_path_buf(),
            mode,
        });
    }
    let euid = rustix::process::geteuid().as_raw();
    if metadata.uid() != euid {
        return Err(SocketError::ParentWrongOwner {
            dir: dir.to_path_buf(),
            uid: metadata.uid(),
            euid,
        });
    }
    Ok(())
}

/// The outcome of a connection attempt to an existing socket.
enum Probe {
    /// Somebody accepted the connection.
    Live,
    /// Connection refused: nobody listens.
    Refused,
    /// Anything else.
    Unknown(String),
}

/// Connects to the socket in a helper thread and waits at most [`PROBE_TIMEOUT`].
///
/// A blocking connect cannot be cancelled: after a timeout the thread is left to finish on its
/// own (a listener with a full backlog answers eventually, or the process exits).
fn probe(path: &Path) -> Probe {
    let (sender, receiver) = mpsc::sync_channel(1);
    let target = path.to_path_buf();
    let spawned = thread::Builder::new()
        .name("kms-socket-probe".to_owned())
        .spawn(move || {
            let outcome = UnixStream::connect(&target).map(drop);
            // The receiver is gone after a timeout; nobody needs the answer then.
            drop(sender.send(outcome));
        });
    if let Err(error) = spawned {
        return Probe::Unknown(format!("cannot start the connection probe: {error}"));
    }
    match receiver.recv_timeout(PROBE_TIMEOUT) {
        Ok(Ok(())) => Probe::Live,
        Ok(Err(error)) if error.kind() == io::ErrorKind::ConnectionRefused => Probe::Refused,
        Ok(Err(error)) => Probe::Unknown(error.to_string()),
        Err(RecvTimeoutError::Timeout) => {
            Probe::Unknown(format!("no answer within {} ms", PROBE_TIMEOUT.as_millis()))
        }
        Err(RecvTimeoutError::Disconnected) => {
            Probe::Unknown("the connection probe ended without an answer".to_owned())
        }
    }
}

/// Removes a socket found dead, if it is still the one that was probed.
fn remove_stale(path: &Path, probed: &Metadata) -> Result<Prepared, SocketError> {
    let now = match fs::symlink_metadata(path) {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Prepared::Absent),
        Err(error) => return Err(SocketError::io("stat", path, error)),
    };
    if !now.file_type().is_socket() || now.dev() != probed.dev() || now.ino() != probed.ino() {
        return Err(SocketError::Indeterminate {
            path: path.to_path_buf(),
            reason: "the socket was replaced while it was probed".to_owned(),
        });
    }
    match fs::remove_file(path) {
        Ok(()) => Ok(Prepared::StaleRemoved),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(Prepared::Absent),
        Err(error) => Err(SocketError::io("remove stale socket", path, error)),
    }
}

fn kind_of(metadata: &Metadata) -> &'static str {
    let kind = metadata.file_type();
    if kind.is_dir() {
        "directory"
    } else if kind.is_file() {
        "regular file"
    } else if kind.is_fifo() {
        "FIFO"
    } else if kind.is_block_device() || kind.is_char_device() {
        "device"
    } else {
        "file of unknown type"
    }
}

#[cfg(test)]
mod watchdog_tests {
    use super::*;

    #[test]
    fn the_watchdog_period_honours_watchdog_usec_and_watchdog_pid() {
        let second = Some(Duration::from_secs(1));
        assert_eq!(watchdog_period_from(Some("1000000"), None, 7), second);
        assert_eq!(watchdog_period_from(Some("1000000"), Some("7"), 7), second);
        assert_eq!(watchdog_period_from(Some("1000000"), Some("8"), 7), None);
        assert_eq!(watchdog_period_from(Some("0"), None, 7), None);
        assert_eq!(watchdog_period_from(Some("soon"), None, 7), None);
        assert_eq!(watchdog_period_from(None, Some("7"), 7), None);
    }
}
