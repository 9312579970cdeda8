//! Request flow, policy chain: a rule's `fault` step. For a share of requests (only those carrying
//! `whenHeader`, when set) it waits before letting the request go on, and for another share it
//! answers with the abort status instead of forwarding. Each share is drawn independently.

use super::{Input, Rejection};
use crate::error::{ErrorKind, ProxyError};
use gatehouse_config::Fault;
use http::header::HeaderName;
use http::StatusCode;
use std::time::Duration;

/// A compiled `fault`.
pub(crate) struct FaultStep {
    delay: Option<(Duration, f64)>,
    abort: Option<(StatusCode, f64)>,
    when_header: Option<HeaderName>,
}

/// What the dice said for one request.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Roll {
    /// Wait this long first.
    pub(crate) delay: Option<Duration>,
    /// Then answer with the abort status.
    pub(crate) abort: bool,
}

impl FaultStep {
    /// Compiles a rule's `fault`.
    pub(crate) fn new(f: &Fault) -> Self {
        FaultStep {
            delay: f.delay.as_ref().map(|d| (d.duration, d.percent)),
            abort: (f.abort.as_ref()).map(|a| {
                let status =
                    StatusCode::from_u16(a.status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
                (status, a.percent)
            }),
            when_header: (f.when_header.as_deref())
                .and_then(|h| HeaderName::from_bytes(h.as_bytes()).ok()),
        }
    }

    /// Draws for one request with `rng` (seeded in tests).
    pub(crate) fn roll(&self, input: &Input, rng: &mut fastrand::Rng) -> Roll {
        if let Some(h) = &self.when_header {
            if !input.headers.contains_key(h) {
                return Roll::default();
            }
        }
        let hit = |rng: &mut fastrand::Rng, percent: f64| rng.f64() * 100.0 < percent;
        Roll {
            delay: self.delay.filter(|(_, p)| hit(rng, *p)).map(|(d, _)| d),
            abort: self.abort.is_some_and(|(_, p)| hit(rng, p)),
        }
    }

    /// The answer of an abort.
    pub(crate) fn rejection(&self) -> Box<Rejection> {
        let status = self.abort.map(|(s, _)| s);
        let mut r = Rejection::new(ProxyError::new(
            ErrorKind::FaultInjected,
            "fault injected by the route's configuration",
        ));
        r.status = status;
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatehouse_config::{FaultAbort, FaultDelay};
    use http::HeaderMap;

    fn input(headers: &HeaderMap) -> Input<'_> {
        Input::for_test(headers, "/")
    }

    #[test]
    fn shares_are_within_two_percent_over_ten_thousand_requests() {
        let step = FaultStep::new(&Fault {
            delay: Some(FaultDelay {
                duration: Duration::from_millis(5),
                percent: 10.0,
            }),
            abort: Some(FaultAbort {
                status: 418,
                percent: 25.0,
            }),
            when_header: None,
        });
        let headers = HeaderMap::new();
        for seed in [1, 2, 3, 42] {
            let mut rng = fastrand::Rng::with_seed(seed);
            let (mut delays, mut aborts) = (0, 0);
            for _ in 0..10_000 {
                let r = step.roll(&input(&headers), &mut rng);
                delays += usize::from(r.delay.is_some());
                aborts += usize::from(r.abort);
            }
            assert!(
                (800..=1200).contains(&delays),
                "seed {seed}: {delays} delays"
            );
            assert!(
                (2300..=2700).contains(&aborts),
                "seed {seed}: {aborts} aborts"
            );
        }
        assert_eq!(step.rejection().status, Some(StatusCode::IM_A_TEAPOT));
    }

    #[test]
    fn only_requests_with_the_header_when_one_is_named() {
        let step = FaultStep::new(&Fault {
            delay: None,
            abort: Some(FaultAbort {
                status: 503,
                percent: 100.0,
            }),
            when_header: Some("x-fault".into()),
        });
        let mut rng = fastrand::Rng::with_seed(1);
        let none = HeaderMap::new();
        assert!(!step.roll(&input(&none), &mut rng).abort);
        let mut with = HeaderMap::new();
        with.insert("x-fault", "1".parse().unwrap());
        assert!(step.roll(&input(&with), &mut rng).abort);
    }
}
