//! Helpers shared by the agent's integration tests.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod agent;
pub mod control;
pub mod dns;
pub mod netns;
