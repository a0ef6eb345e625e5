#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use rustls::{ClientConfig, ClientConnection, RootCertStore};
use rustls_pki_types::ServerName;

use super::*;

/// The `ClientHello` rustls sends for `name` (an IP sends no SNI).
fn hello(name: &str) -> Vec<u8> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(RootCertStore::empty())
        .with_no_client_auth();
    let mut conn = ClientConnection::new(
        Arc::new(config),
        ServerName::try_from(name.to_owned()).unwrap(),
    )
    .unwrap();
    let mut out = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut out).unwrap();
    }
    out
}

#[test]
fn a_real_client_hello_names_its_server() {
    let bytes = hello("Pay.Example.com");
    assert_eq!(parse(&bytes), Hello::Tls(Some("pay.example.com".into())));
    assert_eq!(parse(&hello("10.1.2.3")), Hello::Tls(None));
}

#[test]
fn every_prefix_of_a_client_hello_asks_for_more() {
    let bytes = hello("a.test");
    for n in 0..bytes.len() {
        assert_eq!(parse(&bytes[..n]), Hello::Incomplete, "after {n} bytes");
    }
}

#[test]
fn a_client_hello_split_over_records_is_joined() {
    let bytes = hello("b.test");
    let body = &bytes[5..];
    let (one, two) = body.split_at(40);
    let mut split = Vec::new();
    for part in [one, two] {
        split.extend_from_slice(&[22, 3, 1]);
        split.extend_from_slice(&u16::try_from(part.len()).unwrap().to_be_bytes());
        split.extend_from_slice(part);
    }
    assert_eq!(parse(&split), Hello::Tls(Some("b.test".into())));
}

#[test]
fn plaintext_and_garbage_are_not_tls() {
    assert_eq!(parse(b"GET / HTTP/1.1\r\n"), Hello::NotTls);
    assert_eq!(parse(&[22, 2]), Hello::NotTls);
    // A handshake record holding a ServerHello (type 2).
    assert_eq!(parse(&[22, 3, 3, 0, 4, 2, 0, 0, 0]), Hello::NotTls);
    // A ClientHello whose session id runs past its end.
    let mut bad = vec![22, 3, 1, 0, 40, 1, 0, 0, 36, 3, 3];
    bad.extend_from_slice(&[0; 32]);
    bad.extend_from_slice(&[200, 0]);
    assert_eq!(parse(&bad), Hello::NotTls);
    // A record longer than TLS allows.
    assert_eq!(parse(&[22, 3, 1, 0xff, 0xff]), Hello::NotTls);
}
