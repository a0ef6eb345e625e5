//! Helpers shared by the agent's integration tests.

#![allow(dead_code, clippy::unwrap_used)]

pub mod dns;
pub mod netns;
