//! Test harness (outside the request flow): real upstreams bound to port 0, an in-process gateway
//! started from YAML, a real nginx, and small HTTP client helpers. Used by the integration tests.

pub mod client;
pub mod gateway;
pub mod nginx;
pub mod upstream;

pub use client::{fnv64, Client, Reply};
pub use gateway::TestGateway;
pub use nginx::Nginx;
pub use upstream::Upstream;
