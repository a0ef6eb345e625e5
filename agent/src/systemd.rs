//! Telling systemd how the agent is doing (`Type=notify`): `STATUS=` lines while it starts
//! (what it waits for), `READY=1` once everything is up, `WATCHDOG=1` while the proxy answers,
//! `STOPPING=1` on the way out. Without `NOTIFY_SOCKET` every call does nothing.

use std::time::Duration;

use sd_notify::NotifyState;

/// The agent's messages to the service manager.
#[derive(Debug, Clone, Copy, Default)]
pub struct Notifier;

impl Notifier {
    pub fn status(&self, status: &str) {
        tracing::info!(status, "status");
        send(&[NotifyState::Status(status)]);
    }

    pub fn ready(&self, status: &str) {
        send(&[NotifyState::Ready, NotifyState::Status(status)]);
    }

    pub fn watchdog(&self) {
        send(&[NotifyState::Watchdog]);
    }

    pub fn stopping(&self) {
        send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
    }

    /// The watchdog period systemd expects (`WatchdogSec=`), if any.
    pub fn watchdog_period(&self) -> Option<Duration> {
        sd_notify::watchdog_enabled()
    }
}

fn send(states: &[NotifyState<'_>]) {
    let Some(socket) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let message: String = states.iter().map(|s| format!("{s}\n")).collect();
    match send_to(&socket, message.as_bytes()) {
        Ok(()) => {}
        // The manager is not reading: a watchdog ping is sent again next period, a status
        // line is only informative. The agent's thread must not wait on it.
        Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
            tracing::debug!(
                message = message.trim_end(),
                "service manager busy, not notified"
            );
        }
        Err(error) => tracing::warn!(%error, "could not notify systemd"),
    }
}

/// Sends one datagram to `NOTIFY_SOCKET` (a path, or `@name` in the abstract namespace)
/// without blocking: the agent's runtime may have a single thread.
fn send_to(socket: &std::ffi::OsStr, message: &[u8]) -> std::io::Result<()> {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::net::{SocketAddr, UnixDatagram};
    let bytes = socket.as_bytes();
    let addr = match bytes.strip_prefix(b"@") {
        Some(name) => SocketAddr::from_abstract_name(name)?,
        None => SocketAddr::from_pathname(std::path::Path::new(socket))?,
    };
    let datagram = UnixDatagram::unbound()?;
    datagram.set_nonblocking(true)?;
    datagram.send_to_addr(message, &addr)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_full_notify_socket_does_not_block_the_sender() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let manager = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        let first = send_to(path.as_os_str(), b"WATCHDOG=1\n");
        assert!(first.is_ok(), "{first:?}");
        let mut got = [0u8; 64];
        let n = manager.recv(&mut got).unwrap();
        assert_eq!(&got[..n], b"WATCHDOG=1\n");
        // Nobody reads from here on: the queue fills and sending says so instead of waiting.
        let full = (0..100_000)
            .map(|_| send_to(path.as_os_str(), &[b'x'; 512]))
            .find_map(Result::err)
            .unwrap();
        assert_eq!(full.kind(), std::io::ErrorKind::WouldBlock);
    }
}
