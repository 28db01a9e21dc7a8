//! Integration suite: the real `faas` binary, real components built from `functions/`, real
//! SQLite and PostgreSQL. Tests that touch the store run once per backend.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod support;

mod compat;
mod config;
mod cqrs;
mod event_store;
mod failures;
mod graphql;
mod group_commit;
mod kafka;
mod lifecycle;
mod limits;
mod logs;
mod nodes;
mod observability;
mod outbound;
mod p3;
mod queue;
mod reuse;
mod saga_steps;
mod sagas;
mod schedules;
mod security;
mod soak;
mod tiering;
mod traces;
mod transactions;
mod validation;
