//! The load generator. Open loop: a pacer thread issues tickets at the intended send times
//! (`start + i / rate`), connection workers take them in order, and each latency is measured
//! from the ticket's intended time, not from when a worker got round to sending. A slow
//! answer therefore counts against every request queued behind it (coordinated omission
//! corrected, as wrk2 and oha do). Closed loop (no rate): each worker sends back to back, for
//! saturation throughput.
//!
//! The pacer sleeps on the OS clock (≈ 50–100 µs late on a busy machine), not on tokio's
//! millisecond timer wheel; that lateness is part of every mode's figures alike.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, mpsc};

use super::latency::{Latencies, LatencySummary};

/// Why one call failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("connect: {0}")]
    Connect(String),
    #[error("request: {0}")]
    Request(String),
    #[error("unexpected answer: {0}")]
    Answer(String),
}

impl CallError {
    /// The kind the report counts it under: `connect`, `request` or `answer`.
    pub fn kind(&self) -> &'static str {
        match self {
            CallError::Connect(_) => "connect",
            CallError::Request(_) => "request",
            CallError::Answer(_) => "answer",
        }
    }
}

/// The failures of one kind: how many, and the first one's message.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorKind {
    pub count: u64,
    pub first: String,
}

/// One connection that can make calls one at a time.
pub trait Caller: Send + 'static {
    fn call(&mut self) -> impl Future<Output = Result<(), CallError>> + Send;
}

/// Makes connections.
pub trait Connector: Send + Sync + 'static {
    type Caller: Caller;
    fn connect(&self) -> impl Future<Output = Result<Self::Caller, CallError>> + Send;
}

/// What to run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LoadSpec {
    /// Requests per second, or `None` for closed loop (saturation).
    pub rate: Option<u64>,
    pub connections: usize,
    pub duration: Duration,
}

/// What happened.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LoadReport {
    /// Tickets issued (open loop) or calls made (closed loop).
    pub intended: u64,
    pub completed: u64,
    pub errors: u64,
    /// Tickets still queued when the drain deadline passed (open loop only).
    pub abandoned: u64,
    /// From the first intended send to the last answer.
    pub elapsed_s: f64,
    /// Completed calls per second of the intended duration.
    pub achieved_rps: f64,
    pub latency: LatencySummary,
    /// The failed calls (`errors`) by kind (`connect`, `request`, `answer`), each with its
    /// first message, for the report.
    pub error_kinds: BTreeMap<String, ErrorKind>,
}

/// How long queued tickets may still be served after the pacer stops.
const DRAIN: Duration = Duration::from_secs(5);

#[derive(Debug, Default)]
struct WorkerResult {
    latencies: Latencies,
    completed: u64,
    errors: u64,
    kinds: BTreeMap<String, ErrorKind>,
}

impl WorkerResult {
    fn failed(&mut self, error: &CallError) {
        self.errors += 1;
        let kind = self.kinds.entry(error.kind().to_owned()).or_default();
        if kind.count == 0 {
            kind.first = error.to_string();
        }
        kind.count += 1;
    }

    fn merge(&mut self, other: WorkerResult) {
        self.latencies.merge(&other.latencies);
        self.completed += other.completed;
        self.errors += other.errors;
        for (name, theirs) in other.kinds {
            let ours = self.kinds.entry(name).or_default();
            if ours.count == 0 {
                ours.first = theirs.first;
            }
            ours.count += theirs.count;
        }
    }
}

/// Runs `spec` against connections made by `connector`.
pub async fn run<K: Connector>(connector: Arc<K>, spec: LoadSpec) -> LoadReport {
    let mut callers = Vec::with_capacity(spec.connections);
    let mut setup = WorkerResult::default();
    for _ in 0..spec.connections.max(1) {
        match connector.connect().await {
            Ok(caller) => callers.push(Some(caller)),
            Err(e) => {
                setup.failed(&e);
                callers.push(None);
            }
        }
    }
    let start = Instant::now() + Duration::from_millis(20);
    let stop = start + spec.duration;
    let (intended, tickets) = match spec.rate {
        Some(rate) => {
            let (tx, rx) = mpsc::unbounded_channel();
            let count = pace(tx, start, spec.duration, rate.max(1));
            (Some(count), Some(Arc::new(Mutex::new(rx))))
        }
        None => (None, None),
    };
    let mut workers = Vec::new();
    for caller in callers {
        let connector = connector.clone();
        let tickets = tickets.clone();
        workers.push(tokio::spawn(async move {
            match tickets {
                Some(tickets) => open_worker(connector, caller, tickets, stop + DRAIN).await,
                None => closed_worker(connector, caller, start, stop).await,
            }
        }));
    }
    let mut total = setup;
    for worker in workers {
        if let Ok(result) = worker.await {
            total.merge(result);
        }
    }
    let elapsed = Instant::now().saturating_duration_since(start);
    let intended = match intended {
        Some(handle) => handle.join().unwrap_or_default(),
        None => total.completed + total.errors,
    };
    LoadReport {
        intended,
        completed: total.completed,
        errors: total.errors,
        abandoned: intended.saturating_sub(total.completed + total.errors),
        elapsed_s: elapsed.as_secs_f64(),
        achieved_rps: total.completed as f64 / spec.duration.as_secs_f64(),
        latency: total.latencies.summary(),
        error_kinds: total.kinds,
    }
}

/// The pacer: a plain thread sleeping to each intended time; returns how many it issued.
fn pace(
    tx: mpsc::UnboundedSender<Instant>,
    start: Instant,
    duration: Duration,
    rate: u64,
) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let total = (duration.as_secs_f64() * rate as f64) as u64;
        let interval = 1e9 / rate as f64;
        for i in 0..total {
            let at = start + Duration::from_nanos((i as f64 * interval) as u64);
            let now = Instant::now();
            if at > now {
                std::thread::sleep(at - now);
            }
            if tx.send(at).is_err() {
                return i;
            }
        }
        total
    })
}

async fn reconnect<K: Connector>(connector: &K, result: &mut WorkerResult) -> Option<K::Caller> {
    match connector.connect().await {
        Ok(caller) => Some(caller),
        Err(e) => {
            result.failed(&e);
            tokio::time::sleep(Duration::from_millis(10)).await;
            None
        }
    }
}

async fn open_worker<K: Connector>(
    connector: Arc<K>,
    mut caller: Option<K::Caller>,
    tickets: Arc<Mutex<mpsc::UnboundedReceiver<Instant>>>,
    deadline: Instant,
) -> WorkerResult {
    let mut result = WorkerResult::default();
    loop {
        let ticket = {
            let mut queue = tickets.lock().await;
            tokio::select! {
                ticket = queue.recv() => ticket,
                () = tokio::time::sleep_until(deadline.into()) => None,
            }
        };
        let Some(intended) = ticket else { break };
        if Instant::now() > deadline {
            break;
        }
        while caller.is_none() {
            if Instant::now() > deadline {
                return result;
            }
            caller = reconnect(&*connector, &mut result).await;
        }
        if let Some(c) = caller.as_mut() {
            match c.call().await {
                Ok(()) => {
                    result.latencies.record(intended.elapsed());
                    result.completed += 1;
                }
                Err(e) => {
                    result.failed(&e);
                    caller = None;
                }
            }
        }
    }
    result
}

async fn closed_worker<K: Connector>(
    connector: Arc<K>,
    mut caller: Option<K::Caller>,
    start: Instant,
    stop: Instant,
) -> WorkerResult {
    let mut result = WorkerResult::default();
    tokio::time::sleep_until(start.into()).await;
    while Instant::now() < stop {
        let Some(c) = caller.as_mut() else {
            caller = reconnect(&*connector, &mut result).await;
            continue;
        };
        let sent = Instant::now();
        match c.call().await {
            Ok(()) => {
                result.latencies.record(sent.elapsed());
                result.completed += 1;
            }
            Err(e) => {
                result.failed(&e);
                caller = None;
            }
        }
    }
    result
}
