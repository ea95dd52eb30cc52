//! systemd readiness notifications.
#![allow(clippy::unwrap_used)]

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use bao_kms_runtime_tokio::socket::{notify_ready_to, notify_stopping_to};

fn receive(socket: &UnixDatagram) -> String {
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut buffer = [0_u8; 64];
    let length = socket.recv(&mut buffer).unwrap();
    String::from_utf8(buffer[..length].to_vec()).unwrap()
}

#[test]
fn nothing_is_sent_when_notify_socket_is_unset_or_empty() {
    assert!(!notify_ready_to(None).unwrap());
    assert!(!notify_ready_to(Some("")).unwrap());
    assert!(!notify_stopping_to(None).unwrap());
}

#[test]
fn ready_and_stopping_are_sent_to_a_socket_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify");
    let receiver = UnixDatagram::bind(&path).unwrap();
    let address = path.to_str().unwrap();
    assert!(notify_ready_to(Some(address)).unwrap());
    assert_eq!(receive(&receiver), "READY=1");
    assert!(notify_stopping_to(Some(address)).unwrap());
    assert_eq!(receive(&receiver), "STOPPING=1");
}

#[cfg(target_os = "linux")]
#[test]
fn ready_is_sent_to_an_abstract_socket() {
    use std::os::linux::net::SocketAddrExt;
    let name = format!("bao-kms-notify-test-{}", std::process::id());
    let address = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let receiver = UnixDatagram::bind_addr(&address).unwrap();
    assert!(notify_ready_to(Some(&format!("@{name}"))).unwrap());
    assert_eq!(receive(&receiver), "READY=1");
}

#[test]
fn a_relative_notify_socket_is_an_error() {
    assert!(notify_ready_to(Some("run/notify")).is_err());
}

#[test]
fn a_missing_notify_socket_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent");
    assert!(notify_ready_to(Some(path.to_str().unwrap())).is_err());
}
