//! A client job as the harness hands it to a client process in the client's network
//! namespace (JSON on the command line), and its result (JSON on stdout).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::clients::HttpTarget;
use super::openloop::{self, Caller, Connector, LoadSpec};
use super::tcp;

/// One measurement to make from the client host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Job {
    /// Requests at a fixed rate (open loop) or as fast as they go (closed loop).
    Load { target: HttpTarget, spec: LoadSpec },
    /// Round trips of `size` bytes on one TCP connection.
    EchoRtt {
        addr: SocketAddr,
        size: usize,
        count: u64,
    },
    /// One stream into the sink.
    Bulk {
        addr: SocketAddr,
        duration: Duration,
    },
    /// A new connection per round trip.
    ConnectRate {
        addr: SocketAddr,
        workers: usize,
        duration: Duration,
    },
    /// Retries one request until it succeeds (the path is up) or `timeout` passes.
    Probe {
        target: HttpTarget,
        timeout: Duration,
    },
}

/// Why a job could not produce a figure.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("no answer within {timeout:?}: {last}")]
    ProbeTimeout { timeout: Duration, last: String },
    #[error("result: {0}")]
    Json(#[from] serde_json::Error),
}

/// Runs a job and returns its result as JSON.
pub async fn run(job: Job) -> Result<serde_json::Value, JobError> {
    Ok(match job {
        Job::Load { target, spec } => {
            serde_json::to_value(openloop::run(Arc::new(target), spec).await)?
        }
        Job::EchoRtt { addr, size, count } => {
            serde_json::to_value(tcp::echo_rtt(addr, size, count).await?)?
        }
        Job::Bulk { addr, duration } => serde_json::to_value(tcp::bulk(addr, duration).await?)?,
        Job::ConnectRate {
            addr,
            workers,
            duration,
        } => serde_json::to_value(tcp::connect_rate(addr, workers, duration).await)?,
        Job::Probe { target, timeout } => {
            let started = Instant::now();
            let mut last;
            loop {
                match target.connect().await {
                    Ok(mut caller) => match caller.call().await {
                        Ok(()) => break serde_json::json!({ "ok": true }),
                        Err(e) => last = e.to_string(),
                    },
                    Err(e) => last = e.to_string(),
                }
                if started.elapsed() > timeout {
                    return Err(JobError::ProbeTimeout { timeout, last });
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    })
}
