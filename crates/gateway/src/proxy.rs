//! Request flow, steps 1-7 and 10: listeners, connections, the request handler, forwarding and the
//! bodies that stream both ways.

pub mod body;
pub mod conn;
pub mod deadline;
pub(crate) mod exchange;
pub mod forward;
pub(crate) mod grpc;
pub mod handler;
pub mod listener;
pub(crate) mod mirror;
pub(crate) mod normalize;
pub(crate) mod passthrough;
pub(crate) mod request_target;
pub(crate) mod sni;
pub mod tls;
pub(crate) mod tunnel;
