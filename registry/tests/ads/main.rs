//! The ADS server over real gRPC and TLS on 127.0.0.1, with a real CA and a fake translator.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod auth;
mod delta;
mod harness;
mod sotw;
