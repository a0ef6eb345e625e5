//! A tiny HTTP/1.1 application for demos and tests, served from threads of the calling
//! process on a socket bound inside a host's namespace. Every answer is one line:
//! `<text> peer=<client address> client=<X-Forwarded-Client-Cert or ->`, so a caller sees
//! which instance answered, that the connection came from the host's own proxy, and the
//! caller's mesh identity the proxy verified.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::error::{LabError, Result};
use crate::netns::Netns;

/// A running app; stops accepting on drop.
#[derive(Debug)]
pub struct HttpApp {
    listener: Arc<TcpListener>,
    addr: SocketAddr,
    stopped: Arc<AtomicBool>,
}

impl HttpApp {
    /// Binds `addr` inside `netns` and answers every request with `text` and the details above.
    pub fn start(netns: &Netns, addr: SocketAddr, text: &str) -> Result<Self> {
        let listener = netns
            .run(|| TcpListener::bind(addr))?
            .map_err(|e| LabError::io("binding the app", addr.to_string(), e))?;
        let listener = Arc::new(listener);
        let stopped = Arc::new(AtomicBool::new(false));
        let (l, s, text) = (listener.clone(), stopped.clone(), text.to_owned());
        std::thread::spawn(move || {
            for stream in l.incoming() {
                if s.load(Ordering::Relaxed) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                let text = text.clone();
                std::thread::spawn(move || serve(stream, &text));
            }
        });
        Ok(Self {
            listener,
            addr,
            stopped,
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for HttpApp {
    fn drop(&mut self) {
        self.stopped.store(true, Ordering::Relaxed);
        // Wakes the accepting thread (accept fails on a shut-down listener).
        let _ = rustix::net::shutdown(self.listener.as_fd(), rustix::net::Shutdown::Both);
    }
}

/// Answers requests on one connection until it closes.
fn serve(stream: TcpStream, text: &str) {
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
        let mut client = String::from("-");
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
                    _ => {}
                }
            }
        }
        let mut body = vec![0u8; length];
        if std::io::Read::read_exact(&mut reader, &mut body).is_err() {
            return;
        }
        let answer = format!("{text} peer={peer} client={client}\n");
        let response = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n{answer}",
            answer.len()
        );
        if writer.write_all(response.as_bytes()).is_err() || close {
            return;
        }
    }
}
