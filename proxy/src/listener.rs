//! What both listeners share: the accept loop with drain, and the original destination of an
//! intercepted connection.

use std::future::Future;
use std::net::SocketAddr;

use socket2::SockRef;
use tokio::net::{TcpListener, TcpStream};

use crate::drain::DrainWatcher;

/// The address the client dialled before interception redirected it (`SO_ORIGINAL_DST`), or
/// the socket's local address when it was not redirected (the listener was dialled directly).
pub(crate) fn original_dst(tcp: &TcpStream) -> std::io::Result<SocketAddr> {
    let local = tcp.local_addr()?;
    let sock = SockRef::from(tcp);
    let redirected = if local.is_ipv4() {
        sock.original_dst_v4()
    } else {
        sock.original_dst_v6()
    };
    Ok(redirected.ok().and_then(|a| a.as_socket()).unwrap_or(local))
}

/// Accepts until a drain is signalled, handing each connection to `handle` on its own task
/// with a drain watcher of its own.
pub(crate) async fn accept_loop<F, Fut>(
    name: &'static str,
    listener: TcpListener,
    mut drain: DrainWatcher,
    handle: F,
) where
    F: Fn(TcpStream, SocketAddr, DrainWatcher) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let local = listener.local_addr().ok();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            () = drain.signaled() => break,
        };
        match accepted {
            Ok((tcp, peer)) => {
                let _ = tcp.set_nodelay(true);
                tokio::spawn(handle(tcp, peer, drain.clone()));
            }
            Err(error) => {
                // Out of file descriptors and the like: log, and keep going.
                tracing::warn!(listener = name, ?local, %error, "accept failed");
                tokio::task::yield_now().await;
            }
        }
    }
    tracing::info!(listener = name, ?local, "listener drained");
}
