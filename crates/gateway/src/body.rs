//! Request flow, bodies: request bodies beyond plain streaming (`proxy::body`) — bodies kept for
//! replay so that a failed attempt can be retried (`replay`), and bodies counted against
//! `requestLimits.maxBodySize` as they stream (`limited`), bodies copied for a mirror (`tee`),
//! and the start of a body read ahead of the policy chain for an auth service (`ahead`).

pub(crate) mod ahead;
pub(crate) mod limited;
pub(crate) mod replay;
pub(crate) mod tee;
