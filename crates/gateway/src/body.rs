//! Request flow, the bodies: streaming request bodies and what is done to them on the way
//! (`limited`: `requestLimits.maxBodySize`, counted as the body streams).

pub(crate) mod limited;
