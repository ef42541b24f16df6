//! gzac-portal-bridge: exactly-once Kafka bridge between a citizen portal and GZAC.
//!
//! Imports flow one way: `main` (CLI) → `bridge` (wiring) → `routes` → `model`;
//! `bridge` → `pipeline` → `codec`, `events` (held by `tests/architecture.rs`).

pub mod acls;
pub mod asyncapi;
pub mod bridge;
pub mod catch_up;
pub mod client;
pub mod codec;
pub mod config;
pub mod console;
pub mod dlq;
pub mod encryption;
pub mod events;
pub mod health;
pub mod identifiers;
pub mod model;
pub mod partitioner;
pub mod pipeline;
pub mod retry;
pub mod routes;
pub mod schemas;
pub mod state;
pub mod table;
pub mod tools;
pub mod topics;
pub mod topology;
pub mod watchdog;
