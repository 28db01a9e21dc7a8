//! The suite's heavy tests, in a test binary of their own so that cargo runs them after the
//! integration suite rather than beside it: a real browser (the dashboard) and real cargo builds
//! of every `faas new` template use both cores for a while, which starved the timing-sensitive
//! integration tests (timeouts, in-flight deploys) when they ran in parallel with them.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

// The integration suite's helpers (it allows what this binary leaves unused).
#[path = "../integration/support/mod.rs"]
mod support;

mod dashboard;
mod templates;
