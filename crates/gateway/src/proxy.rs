//! Request flow, steps 1-7 and 10: listeners, connections, the request handler, forwarding and the
//! bodies that stream both ways.

pub mod body;
pub mod client_cert;
pub mod conn;
pub mod deadline;
pub(crate) mod exchange;
pub mod forward;
pub(crate) mod framing_guard;
pub(crate) mod grpc;
pub(crate) mod grpc_web;
pub(crate) mod h2_header_limit;
pub mod handler;
pub mod listener;
pub(crate) mod mirror;
pub(crate) mod normalize;
pub(crate) mod parse_error;
pub(crate) mod passthrough;
pub(crate) mod request_target;
pub(crate) mod sni;
pub(crate) mod streams;
pub mod tls;
pub(crate) mod tls_watch;
pub(crate) mod tunnel;
pub(crate) mod upgrade;
