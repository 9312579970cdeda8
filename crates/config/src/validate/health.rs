//! Config flow, step 4 (backends): health checking, outlier detection, panic threshold and slow
//! start, checked and turned into the model with their defaults.

use super::V;
use crate::loader::Ctx;
use crate::model::{HealthCheck, OutlierDetection, Probe};
use crate::raw;
use std::time::Duration;

/// Parses `5%`, `5` or `50.0%` as a whole percentage 0-100.
pub(crate) fn parse_percent(s: &str) -> Result<u32, String> {
    let t = s.trim();
    let n = t.strip_suffix('%').unwrap_or(t).trim();
    match n.parse::<f64>() {
        Ok(v) if (0.0..=100.0).contains(&v) => Ok(v.round() as u32),
        _ => Err(format!(
            "expected a percentage from 0% to 100% such as `50%`, found `{s}`"
        )),
    }
}

/// `200`, `200-399` as an inclusive range.
fn parse_status_range(s: &str) -> Option<(u16, u16)> {
    let (a, b) = s.split_once('-').unwrap_or((s, s));
    let (a, b) = (a.trim().parse::<u16>().ok()?, b.trim().parse::<u16>().ok()?);
    ((100..=599).contains(&a) && (100..=599).contains(&b) && a <= b).then_some((a, b))
}

impl V<'_> {
    pub(super) fn percent(
        &mut self,
        ctx: &Ctx,
        path: &str,
        v: Option<&String>,
        default: u32,
    ) -> u32 {
        match v.map(|s| parse_percent(s)) {
            None => default,
            Some(Ok(p)) => p,
            Some(Err(e)) => {
                self.errors.push(ctx.error(path, e));
                default
            }
        }
    }

    fn probe(&mut self, ctx: &Ctx, spec: &raw::HealthCheckSpec, grpc_backend: bool) -> Probe {
        let given = [spec.http.is_some(), spec.tcp.is_some(), spec.grpc.is_some()];
        if given.iter().filter(|g| **g).count() != 1 {
            self.errors.push(ctx.error(
                "spec.healthCheck",
                "a health check needs exactly one of `http`, `tcp` or `grpc`",
            ));
        }
        if let Some(h) = &spec.http {
            let path = h.path.clone().unwrap_or_else(|| "/".into());
            if !path.starts_with('/') {
                self.errors.push(ctx.error(
                    "spec.healthCheck.http.path",
                    format!("health check path `{path}` must start with `/`"),
                ));
            }
            let mut expected = Vec::new();
            for (i, s) in h.expected_statuses.iter().flatten().enumerate() {
                match parse_status_range(s) {
                    Some(r) => expected.push(r),
                    None => self.errors.push(ctx.error(
                        &format!("spec.healthCheck.http.expectedStatuses[{i}]"),
                        format!("expected a status such as `200` or a range such as `200-399`, found `{s}`"),
                    )),
                }
            }
            if expected.is_empty() {
                expected.push((200, 399));
            }
            return Probe::Http {
                path,
                expected_statuses: expected,
                host: h.host.clone(),
            };
        }
        if let Some(g) = &spec.grpc {
            if !grpc_backend {
                self.errors.push(ctx.error(
                    "spec.healthCheck.grpc",
                    "gRPC health checks need a backend with `protocol: GRPC` or `HTTP2`",
                ));
            }
            return Probe::Grpc {
                service: g.service.clone().unwrap_or_default(),
            };
        }
        Probe::Tcp
    }

    /// `spec.healthCheck`.
    pub(super) fn health_check(
        &mut self,
        ctx: &Ctx,
        spec: Option<&raw::HealthCheckSpec>,
        grpc_backend: bool,
    ) -> Option<HealthCheck> {
        let spec = spec?;
        let probe = self.probe(ctx, spec, grpc_backend);
        let interval = self.duration(
            ctx,
            "spec.healthCheck.interval",
            spec.interval.as_ref(),
            Duration::from_secs(5),
        );
        let timeout = self.duration(
            ctx,
            "spec.healthCheck.timeout",
            spec.timeout.as_ref(),
            Duration::from_secs(1),
        );
        if interval < Duration::from_millis(10) {
            self.errors.push(ctx.error(
                "spec.healthCheck.interval",
                "the health check interval must be at least 10ms",
            ));
        }
        if timeout.is_zero() || timeout > interval {
            self.errors.push(ctx.error(
                "spec.healthCheck.timeout",
                "the health check timeout must be above 0 and at most the interval",
            ));
        }
        let mut threshold = |field: &str, v: Option<u32>, default: u32| match v {
            Some(0) => {
                self.errors.push(ctx.error(
                    &format!("spec.healthCheck.{field}"),
                    format!("`{field}` must be at least 1"),
                ));
                default
            }
            v => v.unwrap_or(default),
        };
        let unhealthy_threshold = threshold("unhealthyThreshold", spec.unhealthy_threshold, 3);
        let healthy_threshold = threshold("healthyThreshold", spec.healthy_threshold, 2);
        Some(HealthCheck {
            probe,
            interval,
            timeout,
            unhealthy_threshold,
            healthy_threshold,
        })
    }

    /// `spec.outlierDetection`.
    pub(super) fn outlier_detection(
        &mut self,
        ctx: &Ctx,
        spec: Option<&raw::OutlierDetectionSpec>,
    ) -> Option<OutlierDetection> {
        let spec = spec?;
        if spec.consecutive_errors == Some(0) {
            self.errors.push(ctx.error(
                "spec.outlierDetection.consecutiveErrors",
                "`consecutiveErrors` must be at least 1",
            ));
        }
        let base_ejection_time = self.duration(
            ctx,
            "spec.outlierDetection.baseEjectionTime",
            spec.base_ejection_time.as_ref(),
            Duration::from_secs(30),
        );
        if base_ejection_time.is_zero() {
            self.errors.push(ctx.error(
                "spec.outlierDetection.baseEjectionTime",
                "`baseEjectionTime` must be above 0",
            ));
        }
        Some(OutlierDetection {
            consecutive_errors: spec.consecutive_errors.unwrap_or(5).max(1),
            base_ejection_time,
            max_ejection_percent: self.percent(
                ctx,
                "spec.outlierDetection.maxEjectionPercent",
                spec.max_ejection_percent.as_ref(),
                50,
            ),
        })
    }

    /// `spec.panicThreshold` (default 50%, as Envoy) and `spec.slowStart`.
    pub(super) fn panic_and_slow_start(
        &mut self,
        ctx: &Ctx,
        spec: &raw::BackendSpec,
    ) -> (u32, Option<Duration>) {
        let panic = self.percent(
            ctx,
            "spec.panicThreshold",
            spec.panic_threshold.as_ref(),
            50,
        );
        let slow = spec
            .slow_start
            .as_ref()
            .map(|s| self.duration(ctx, "spec.slowStart", Some(s), Duration::ZERO));
        (panic, slow.filter(|d| !d.is_zero()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_and_status_ranges() {
        assert_eq!(parse_percent("5%"), Ok(5));
        assert_eq!(parse_percent("50"), Ok(50));
        assert_eq!(parse_percent("12.6%"), Ok(13));
        assert!(parse_percent("150%").is_err());
        assert!(parse_percent("x").is_err());
        assert_eq!(parse_status_range("200-399"), Some((200, 399)));
        assert_eq!(parse_status_range("204"), Some((204, 204)));
        assert_eq!(parse_status_range("399-200"), None);
        assert_eq!(parse_status_range("99"), None);
    }
}
