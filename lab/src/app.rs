//! A tiny HTTP/1.1 application for demos and tests, served from threads of the calling
//! process on a socket bound inside a host's namespace. Every answer carries `x-app: <text>`
//! and is one line: `<text> peer=<client address> client=<X-Forwarded-Client-Cert or ->`, so
//! a caller sees which instance answered, that the connection came from the host's own proxy,
//! and the caller's mesh identity the proxy verified. What arrived is echoed in headers too:
//! `x-app-target` (the request target), `x-app-host` (`Host`), and every `x-test-*` request
//! header as `x-echo-test-*`.
//!
//! A request's query string can ask for a behaviour, so one app serves many test scenarios:
//! `status=<code>` answers with that status, `sleep_ms=<n>` waits that long before answering,
//! and `only=<text>` applies both to the app whose text is `<text>` only (the others answer
//! 200 at once). The app counts the requests that arrived, by path without the query
//! ([`HttpApp::hits`]), before any wait: a request the caller gave up on still counts.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::error::{LabError, Result};
use crate::netns::Netns;

/// Requests that arrived, by path.
type Hits = Arc<Mutex<BTreeMap<String, u64>>>;

/// A running app; stops accepting on drop.
#[derive(Debug)]
pub struct HttpApp {
    listener: Arc<TcpListener>,
    addr: SocketAddr,
    stopped: Arc<AtomicBool>,
    hits: Hits,
}

impl HttpApp {
    /// Binds `addr` inside `netns` and answers every request with `text` and the details above.
    pub fn start(netns: &Netns, addr: SocketAddr, text: &str) -> Result<Self> {
        let listener = netns
            .run(|| TcpListener::bind(addr))?
            .map_err(|e| LabError::io("binding the app", addr.to_string(), e))?;
        let listener = Arc::new(listener);
        let stopped = Arc::new(AtomicBool::new(false));
        let hits = Hits::default();
        let (l, s, h, text) = (
            listener.clone(),
            stopped.clone(),
            hits.clone(),
            text.to_owned(),
        );
        std::thread::spawn(move || {
            for stream in l.incoming() {
                if s.load(Ordering::Relaxed) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                let (text, hits) = (text.clone(), h.clone());
                std::thread::spawn(move || serve(stream, &text, &hits));
            }
        });
        Ok(Self {
            listener,
            addr,
            stopped,
            hits,
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many requests for `path` (without the query) arrived so far.
    pub fn hits(&self, path: &str) -> u64 {
        lock(&self.hits).get(path).copied().unwrap_or(0)
    }

    /// How many requests arrived so far, whatever their path.
    pub fn total_hits(&self) -> u64 {
        lock(&self.hits).values().sum()
    }
}

impl Drop for HttpApp {
    fn drop(&mut self) {
        self.stopped.store(true, Ordering::Relaxed);
        // Wakes the accepting thread (accept fails on a shut-down listener).
        let _ = rustix::net::shutdown(self.listener.as_fd(), rustix::net::Shutdown::Both);
    }
}

fn lock(hits: &Hits) -> std::sync::MutexGuard<'_, BTreeMap<String, u64>> {
    hits.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The behaviour a request asks for (module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Asked {
    status: u16,
    sleep: Duration,
}

/// Splits a request target into its path and the behaviour its query asks of the app called
/// `text`. Unknown parameters and unparsable values are ignored (the defaults stay).
fn asked(target: &str, text: &str) -> (String, Asked) {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut asked = Asked {
        status: 200,
        sleep: Duration::ZERO,
    };
    let mut only = None;
    for (name, value) in query.split('&').filter_map(|p| p.split_once('=')) {
        match name {
            "status" => {
                if let Some(code) = value.parse().ok().filter(|c| (100..=599).contains(c)) {
                    asked.status = code;
                }
            }
            "sleep_ms" => {
                if let Ok(ms) = value.parse() {
                    asked.sleep = Duration::from_millis(ms);
                }
            }
            "only" => only = Some(value),
            _ => {}
        }
    }
    if only.is_some_and(|o| o != text) {
        asked = Asked {
            status: 200,
            sleep: Duration::ZERO,
        };
    }
    (path.to_owned(), asked)
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

/// Answers requests on one connection until it closes.
fn serve(stream: TcpStream, text: &str, hits: &Hits) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let peer = stream
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let Ok(write_half) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    let mut writer = write_half;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let target = request_line.split_whitespace().nth(1).unwrap_or("/");
        let (path, asked) = asked(target, text);
        let mut client = String::from("-");
        let mut echo = format!("x-app-target: {target}\r\n");
        let mut length = 0usize;
        let mut close = false;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                let value = value.trim();
                match name.to_ascii_lowercase().as_str() {
                    "x-forwarded-client-cert" => client = value.to_owned(),
                    "content-length" => length = value.parse().unwrap_or(0),
                    "connection" => close = value.eq_ignore_ascii_case("close"),
                    "host" => echo += &format!("x-app-host: {value}\r\n"),
                    lower => {
                        if let Some(rest) = lower.strip_prefix("x-test-") {
                            echo += &format!("x-echo-test-{rest}: {value}\r\n");
                        }
                    }
                }
            }
        }
        let mut body = vec![0u8; length];
        if std::io::Read::read_exact(&mut reader, &mut body).is_err() {
            return;
        }
        *lock(hits).entry(path).or_insert(0) += 1;
        std::thread::sleep(asked.sleep);
        let answer = format!("{text} peer={peer} client={client}\n");
        let response = format!(
            "HTTP/1.1 {} {}\r\ncontent-type: text/plain\r\nx-app: {text}\r\n{echo}\
             content-length: {}\r\n\r\n{answer}",
            asked.status,
            reason(asked.status),
            answer.len()
        );
        if writer.write_all(response.as_bytes()).is_err() || close {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_asks_for_a_status_and_a_wait() {
        let (path, a) = asked("/slow?sleep_ms=1500&status=503", "v1");
        assert_eq!(path, "/slow");
        assert_eq!(a.status, 503);
        assert_eq!(a.sleep, Duration::from_millis(1500));
        let (path, a) = asked("/", "v1");
        assert_eq!(
            (path.as_str(), a.status, a.sleep),
            ("/", 200, Duration::ZERO)
        );
    }

    #[test]
    fn only_names_the_app_that_misbehaves() {
        assert_eq!(asked("/x?status=500&only=v1", "v1").1.status, 500);
        assert_eq!(asked("/x?status=500&only=v1", "v2").1.status, 200);
        assert_eq!(
            asked("/x?only=v2&sleep_ms=10", "v1").1.sleep,
            Duration::ZERO
        );
    }

    #[test]
    fn bad_values_keep_the_defaults() {
        let (_, a) = asked("/x?status=abc&sleep_ms=-1&status=99&other=1&novalue", "v1");
        assert_eq!((a.status, a.sleep), (200, Duration::ZERO));
    }
}
