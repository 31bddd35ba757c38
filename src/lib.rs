//! bkvy: a self-hosted LLM gateway.
//!
//! Layout:
//! - [`budget`]: a byte budget shared by every request (bodies in flight).
//! - [`clients`]: each worker's HTTP clients, one per provider connect timeout.
//! - [`config`]: the validated configuration and its loader.
//! - [`types`]: the normalised request/response vocabulary.
//! - [`providers`]: one adapter per upstream API (request building, response parsing,
//!   error classification) and the one place an upstream call is made.
//! - [`fake`]: fake provider servers speaking the real wire formats, for the demo,
//!   benchmarks and tests.
//!
//! - [`state`]: the state every worker shares and the live snapshot (config and routing
//!   table) a reload swaps whole.
//! - [`table`]: the routing table built from the config (start and reload alike).
//! - [`events`]: fan-out of per-request completion events to their consumers.
//! - [`gateway`]: carrying out a routing plan (reserve, call, retry, fail over), plain or
//!   streamed.
//! - [`http`]: the actix-web layer: routes, the one chat pipeline (`http::chat`) and its
//!   front doors, error mapping.
//! - [`json`]: reading JSON from bytes with one UTF-8 check.
//! - [`metrics`]: Prometheus metrics for operators.
//! - [`probes`]: optional free health probes of every key.
//! - [`reload`]: config reload without restart.
//! - [`server`]: starting the actors and the HTTP server on a listener, and the one
//!   shutdown sequence.
//!
//! The actor system (key/model actors, router) lives in the `bkvy-actors` crate.

pub mod budget;
pub mod client_ledger;
pub mod clients;
pub mod config;
pub mod events;
#[cfg(feature = "fake")]
pub mod fake;
pub mod gateway;
pub mod http;
pub mod json;
pub mod metrics;
pub mod probes;
pub mod providers;
pub mod reload;
pub mod server;
pub mod state;
pub mod table;
pub mod types;
