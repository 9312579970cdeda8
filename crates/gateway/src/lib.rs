//! Gatehouse runtime: the data plane (listeners -> routing -> upstream), the admin API and reloads.
//!
//! Glossary: *downstream* is the client side, *upstream* the service side; a *listener* accepts
//! downstream connections; a *route* holds *rules* that match requests; a rule forwards to weighted
//! *backends*, each a set of *endpoints*; a *snapshot* is everything built from one config version;
//! a *policy* (later issues) is a step of a rule's chain such as auth or rate limiting.

pub mod admin;
pub(crate) mod body;
pub mod discovery;
pub mod error;
pub mod gateway;
pub(crate) mod health;
pub mod memory;
pub(crate) mod policy;
pub(crate) mod portal;
pub mod proxy;
pub mod reload;
pub mod routing;
pub(crate) mod runtime;
pub mod snapshot;
pub mod state;
pub mod telemetry;
pub mod upstream;

pub use gateway::{ConfigSource, Gateway, ReloadStatus, StartError};
