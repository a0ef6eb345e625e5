//! The server name a TLS client asks for, read from its `ClientHello` without terminating
//! TLS (what Envoy's `tls_inspector` listener filter does). Owns the parsing of TLS records
//! and the `server_name` extension (RFC 8446 §4.1.2, RFC 6066 §3); the bytes read are handed
//! back so the data path can send them on unchanged.

use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// The most `ClientHello` bytes read before giving up on finding a name (Envoy's
/// `tls_inspector` default).
pub const MAX_CLIENT_HELLO: usize = 16 * 1024;

const HANDSHAKE_RECORD: u8 = 22;
const CLIENT_HELLO: u8 = 1;
const SERVER_NAME_EXTENSION: u16 = 0;
const HOST_NAME: u8 = 0;

/// What the bytes read so far say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hello {
    /// A complete `ClientHello`, with the host name it asks for, if any.
    Tls(Option<String>),
    /// Not a TLS `ClientHello` (or a malformed one).
    NotTls,
    /// A `ClientHello` so far: more bytes are needed.
    Incomplete,
}

/// Parses the start of a TLS connection: handshake records carrying a `ClientHello`, which may
/// be split over several records.
pub fn parse(bytes: &[u8]) -> Hello {
    let mut handshake = Vec::new();
    let mut rest = bytes;
    loop {
        let Some(header) = rest.get(..5) else {
            return if rest.first().is_some_and(|b| *b != HANDSHAKE_RECORD)
                || rest.get(1).is_some_and(|b| *b != 3)
            {
                Hello::NotTls
            } else {
                Hello::Incomplete
            };
        };
        if header[0] != HANDSHAKE_RECORD || header[1] != 3 {
            return Hello::NotTls;
        }
        let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
        if len == 0 || len > (1 << 14) + 2048 {
            return Hello::NotTls;
        }
        let Some(fragment) = rest.get(5..5 + len) else {
            handshake.extend_from_slice(&rest[5..]);
            return check_start(&handshake);
        };
        handshake.extend_from_slice(fragment);
        rest = &rest[5 + len..];
        if let Some(found) = client_hello(&handshake) {
            return found;
        }
    }
}

/// A partial handshake: still plausibly a `ClientHello`?
fn check_start(handshake: &[u8]) -> Hello {
    match handshake.first() {
        Some(&CLIENT_HELLO) | None => Hello::Incomplete,
        Some(_) => Hello::NotTls,
    }
}

/// `None`: the handshake message is not complete yet.
fn client_hello(handshake: &[u8]) -> Option<Hello> {
    let mut r = Reader(handshake);
    if r.u8()? != CLIENT_HELLO {
        return Some(Hello::NotTls);
    }
    let len = r.u24()?;
    let Some(body) = r.take(len) else {
        return if len > MAX_CLIENT_HELLO {
            Some(Hello::NotTls)
        } else {
            None
        };
    };
    Some(match server_name(body) {
        Ok(name) => Hello::Tls(name),
        Err(Malformed) => Hello::NotTls,
    })
}

struct Malformed;

fn server_name(body: &[u8]) -> Result<Option<String>, Malformed> {
    let mut r = Reader(body);
    r.take(2 + 32).ok_or(Malformed)?; // legacy_version, random
    let session = r.u8().ok_or(Malformed)?;
    r.take(usize::from(session)).ok_or(Malformed)?;
    let suites = r.u16().ok_or(Malformed)?;
    r.take(usize::from(suites)).ok_or(Malformed)?;
    let compression = r.u8().ok_or(Malformed)?;
    r.take(usize::from(compression)).ok_or(Malformed)?;
    if r.0.is_empty() {
        return Ok(None); // no extensions at all
    }
    let len = r.u16().ok_or(Malformed)?;
    let mut exts = Reader(r.take(usize::from(len)).ok_or(Malformed)?);
    while !exts.0.is_empty() {
        let kind = exts.u16().ok_or(Malformed)?;
        let len = exts.u16().ok_or(Malformed)?;
        let data = exts.take(usize::from(len)).ok_or(Malformed)?;
        if kind != SERVER_NAME_EXTENSION {
            continue;
        }
        let mut list = Reader(data);
        let len = list.u16().ok_or(Malformed)?;
        let mut names = Reader(list.take(usize::from(len)).ok_or(Malformed)?);
        while !names.0.is_empty() {
            let kind = names.u8().ok_or(Malformed)?;
            let len = names.u16().ok_or(Malformed)?;
            let name = names.take(usize::from(len)).ok_or(Malformed)?;
            if kind == HOST_NAME {
                let name = std::str::from_utf8(name).map_err(|_| Malformed)?;
                return Ok(Some(name.to_ascii_lowercase()));
            }
        }
    }
    Ok(None)
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, tail) = (self.0.get(..n)?, self.0.get(n..)?);
        self.0 = tail;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }

    fn u24(&mut self) -> Option<usize> {
        self.take(3)
            .map(|b| usize::from(b[0]) << 16 | usize::from(b[1]) << 8 | usize::from(b[2]))
    }
}

/// Reads from `tcp` until the `ClientHello` is complete, the bytes are not TLS, the client
/// stops sending or `timeout` passes. Returns the bytes read (to be sent on) and the server
/// name, if a `ClientHello` carried one.
pub async fn read_client_hello(
    tcp: &mut TcpStream,
    timeout: Duration,
) -> (Vec<u8>, Option<String>) {
    let mut buf = Vec::with_capacity(2048);
    let reading = async {
        loop {
            match parse(&buf) {
                Hello::Tls(name) => return name,
                Hello::NotTls => return None,
                Hello::Incomplete if buf.len() >= MAX_CLIENT_HELLO => return None,
                Hello::Incomplete => {}
            }
            let mut chunk = [0u8; 2048];
            match tcp.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    };
    let name = tokio::time::timeout(timeout, reading).await.ok().flatten();
    (buf, name)
}

#[cfg(test)]
mod tests;
