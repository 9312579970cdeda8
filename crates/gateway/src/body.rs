//! Request flow, bodies: request bodies beyond plain streaming (`proxy::body`) — bodies kept for
//! replay so that a failed attempt can be retried (`replay`), and bodies counted against
//! `requestLimits.maxBodySize` as they stream (`limited`), and bodies copied for a mirror (`tee`).

pub(crate) mod limited;
pub(crate) mod replay;
pub(crate) mod tee;
