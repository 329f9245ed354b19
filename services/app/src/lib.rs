//! zhiku's use cases, behind every interface (the HTTP API, the CLI, the benchmarks and
//! evaluations): [`services::Services`] loads the models and stores at start-up and
//! offers upload, search and ask; conversations, follow-up rewriting and cross-language
//! search extend ask; [`openai`] turns OpenAI requests into the service's own. Requests are
//! validated here, once, whatever interface they came through, and [`auth`] and
//! [`access`] hold who may do what. Nothing here knows HTTP: errors are
//! [`error::ServiceError`]s, which the server maps to statuses.

#![warn(missing_docs)]

pub mod access;
pub mod ask;
pub mod auth;
pub mod config;
pub mod conversations;
pub mod error;
pub mod limits;
pub mod metrics;
pub mod openai;
pub mod services;
pub mod translate;
