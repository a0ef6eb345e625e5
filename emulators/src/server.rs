//! The HTTP side every emulator shares: accept connections on the socket a [`Listen`] made,
//! answer each request with the emulator's function, stop (listener closed, open connections
//! cut) and serve again on the same address.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use http_body_util::combinators::BoxBody;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::task::{JoinHandle, JoinSet};

use crate::Listen;

/// What an emulator answers with.
pub(crate) type Body = BoxBody<Bytes, Infallible>;
type Answer = Arc<
    dyn Fn(Request<Incoming>) -> Pin<Box<dyn Future<Output = Response<Body>> + Send>> + Send + Sync,
>;

/// A running HTTP server; stops when dropped.
pub(crate) struct Server {
    address: SocketAddr,
    listen: Listen,
    answer: Answer,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("address", &self.address)
            .field("listen", &self.listen)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Binds the first address of `listen` and serves `answer`; needs a Tokio runtime.
    pub(crate) fn start<F, Fut>(listen: Listen, answer: F) -> Self
    where
        F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response<Body>> + Send + 'static,
    {
        let listener = listen.first();
        let address = listener.local_addr().unwrap();
        let answer: Answer = Arc::new(move |request| Box::pin(answer(request)));
        let task = tokio::spawn(serve(listener, answer.clone()));
        Self {
            address,
            listen,
            answer,
            task: Mutex::new(Some(task)),
        }
    }

    /// The address it serves on.
    pub(crate) fn address(&self) -> SocketAddr {
        self.address
    }

    /// Stops answering: the listener closes and open connections are cut.
    pub(crate) fn stop(&self) {
        if let Some(task) = self.task.lock().unwrap().take() {
            task.abort();
        }
    }

    /// Serves again on the same address, bound by the same [`Listen`].
    pub(crate) fn resume(&self) {
        let listener = self.listen.at(self.address);
        let task = tokio::spawn(serve(listener, self.answer.clone()));
        *self.task.lock().unwrap() = Some(task);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn serve(listener: tokio::net::TcpListener, answer: Answer) {
    // Connections live in this task's set: aborting the server cuts them all.
    let mut connections = JoinSet::new();
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let answer = answer.clone();
        connections.spawn(async move {
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                let reply = answer(request);
                async move { Ok::<_, Infallible>(reply.await) }
            });
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tcp), service)
                .await;
        });
        while connections.try_join_next().is_some() {}
    }
}
