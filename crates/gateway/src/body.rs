//! Request flow, bodies: request bodies beyond plain streaming (`proxy::body`) — bodies kept for
//! replay so that a failed attempt can be retried (`replay`), and bodies counted against
//! `requestLimits.maxBodySize` as they stream (`limited`).

pub(crate) mod limited;
pub(crate) mod replay;
