//! bkvy: a self-hosted LLM gateway.
//!
//! Layout:
//! - [`config`]: the validated configuration and its loader.
//! - [`types`]: the normalised request/response vocabulary.
//! - [`providers`]: one adapter per upstream API (request building, response parsing,
//!   error classification) and the one place an upstream call is made.
//! - [`fake`]: fake provider servers speaking the real wire formats, for the demo,
//!   benchmarks and tests.
//!
//! The actor system (key/model actors, router) lives in the `bkvy-actors` crate.

pub mod config;
pub mod fake;
pub mod providers;
pub mod types;
