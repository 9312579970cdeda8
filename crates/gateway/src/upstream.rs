//! Request flow, steps 8-9: backends, their endpoints, the balancer and the upstream client.

pub mod backend;
pub(crate) mod balancer;
pub mod client;
pub mod codec;
#[cfg(test)]
mod codec_props;
pub mod h1;
pub mod pool;
pub(crate) mod transport;

pub use backend::{BackendRt, EndpointRt, EndpointShared};
