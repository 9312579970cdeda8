//! Request flow, steps 8-9: backends, their endpoints, the balancer and the upstream client.

pub mod backend;
pub mod client;
pub mod pool;

pub use backend::{BackendRt, EndpointRt, EndpointShared};
