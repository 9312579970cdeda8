//! Request flow, bodies: request bodies beyond plain streaming (`proxy::body`) — bodies kept for
//! replay so that a failed attempt can be retried (`replay`).

pub(crate) mod replay;
