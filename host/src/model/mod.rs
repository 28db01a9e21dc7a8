//! The configuration a function is deployed with, as plain data: its [`spec::DeploySpec`]
//! (routes, triggers, grants, outboxes, outbound HTTP), its [`limits`], its [`routes`] patterns and the
//! [`names`] everything is addressed by, its [`variables`] and secrets and the [`secrets::SecretKey`]
//! that seals them. The leaf of the crate: every layer imports it, it imports
//! nothing of the crate.

pub mod limits;
pub mod names;
pub mod outbound;
pub mod routes;
pub mod secrets;
pub mod spec;
pub mod variables;
