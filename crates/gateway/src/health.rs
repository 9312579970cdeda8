//! Control plane, beside discovery: what Gatehouse learns about endpoint health, and writes into
//! the backends' run-time state (`state/`). Active checks probe every endpoint on an interval from
//! the control runtime; passive outlier detection watches real responses and ejects endpoints that
//! keep failing. Requests only read the verdicts (two relaxed atomic loads per pick).

pub(crate) mod active;
pub(crate) mod outlier;
mod probe;
