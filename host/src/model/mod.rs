//! The configuration a function is deployed with, as plain data: its [`spec::DeploySpec`]
//! (routes, triggers, grants, outboxes, outbound HTTP, async retries), its [`limits`], instance [`reuse`], its [`routes`] patterns, its
//! cron [`schedule`]s and the
//! [`names`] everything is addressed by, its [`variables`] and secrets and the [`secrets::SecretKey`]
//! that seals them. The leaf of the crate: every layer imports it, it imports
//! nothing of the crate.

pub mod limits;
pub mod names;
pub mod outbound;
pub mod reuse;
pub mod routes;
pub mod schedule;
pub mod secrets;
pub mod spec;
pub mod sse;
pub mod variables;
