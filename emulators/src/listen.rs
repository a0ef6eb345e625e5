//! Where an emulator listens: a function that makes its bound TCP socket. The function is
//! kept, so an emulator stopped for an outage binds the same address again in the same
//! place when it resumes.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

type BindFn = dyn Fn(SocketAddr) -> std::io::Result<std::net::TcpListener> + Send + Sync;

/// Makes an emulator's listening socket. Cheap to clone.
#[derive(Clone)]
pub struct Listen {
    bind: Arc<BindFn>,
    first: SocketAddr,
}

impl fmt::Debug for Listen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Listen")
            .field("first", &self.first)
            .finish_non_exhaustive()
    }
}

impl Default for Listen {
    /// A free port of 127.0.0.1, in the calling thread's network namespace.
    fn default() -> Self {
        Self::with(
            SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            std::net::TcpListener::bind,
        )
    }
}

impl Listen {
    /// Binds `first` (port 0 for a free one) with `bind`, and the address it got with `bind`
    /// again after an outage. `bind` may run anywhere, e.g. on a thread that entered another
    /// network namespace: a socket stays in the namespace it was made in.
    pub fn with(
        first: SocketAddr,
        bind: impl Fn(SocketAddr) -> std::io::Result<std::net::TcpListener> + Send + Sync + 'static,
    ) -> Self {
        Self {
            bind: Arc::new(bind),
            first,
        }
    }

    /// The first listener (on [`Listen::with`]'s address).
    pub(crate) fn first(&self) -> tokio::net::TcpListener {
        self.at(self.first)
    }

    /// A listener on `address`, made by the bind function; must be called within a Tokio
    /// runtime. Panics (a test failure) when the address cannot be bound.
    pub(crate) fn at(&self, address: SocketAddr) -> tokio::net::TcpListener {
        let listener = (self.bind)(address)
            .unwrap_or_else(|e| panic!("emulator: cannot listen on {address}: {e}"));
        listener
            .set_nonblocking(true)
            .expect("emulator: a non-blocking listener");
        tokio::net::TcpListener::from_std(listener).expect("emulator: a Tokio listener")
    }
}
