//! Request flow, first and last step: metrics and access logs. See `telemetry/metrics.rs` and
//! `telemetry/access_log.rs`.

pub mod access_log;
pub(crate) mod grpc_metrics;
pub mod metrics;
pub(crate) mod mirror_metrics;
pub(crate) mod policy_metrics;
pub(crate) mod rollout;
pub(crate) mod stream_metrics;
pub(crate) mod upstream_metrics;
