//! Request flow, backend choice under a `Rollout`: the schedule. Where the canary's weight should
//! be at a given moment is a pure function of the Rollout's `startTime`, its `steps` or `ramp`,
//! and the time, so every replica given the same Rollout applies the same weight at the same
//! moment without talking to the others. `state::rollout` applies it; the split reads the result.

use gatehouse_config::{Rollout, Schedule};
use std::time::{Duration, SystemTime};

/// Weights are kept in hundredths of a percent: a ramp moves in fractions of one.
pub(crate) const FULL: u32 = 10_000;

/// Where the schedule stands at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Position {
    /// The canary's weight, 0..=[`FULL`].
    pub(crate) weight: u32,
    /// The step (for a ramp: the increment) in force; `None` before `startTime`.
    pub(crate) step: Option<usize>,
    /// When the weight changes next; `None` once the schedule is complete.
    pub(crate) next_change: Option<SystemTime>,
    /// The schedule has run to its end: the Rollout promotes.
    pub(crate) complete: bool,
}

/// A percentage as a weight.
pub(crate) fn weight_of(percent: f64) -> u32 {
    ((percent * 100.0).round() as u32).min(FULL)
}

/// A weight as a percentage, for people.
pub(crate) fn percent_of(weight: u32) -> f64 {
    f64::from(weight) / 100.0
}

/// The number of steps of a schedule (for a ramp, of increments).
pub(crate) fn step_count(r: &Rollout) -> usize {
    match &r.schedule {
        Schedule::Steps(s) => s.len(),
        Schedule::Ramp(r) => increments(r.over, r.every) as usize,
    }
}

fn increments(over: Duration, every: Duration) -> u128 {
    over.as_nanos().div_ceil(every.as_nanos().max(1))
}

/// Where `r`'s schedule stands at `now`.
pub(crate) fn position(r: &Rollout, now: SystemTime) -> Position {
    let Ok(elapsed) = now.duration_since(r.start_time) else {
        return Position {
            weight: 0,
            step: None,
            next_change: Some(r.start_time),
            complete: false,
        };
    };
    let done = |step| Position {
        weight: FULL,
        step: Some(step),
        next_change: None,
        complete: true,
    };
    match &r.schedule {
        Schedule::Steps(steps) => {
            let mut until = Duration::ZERO;
            for (i, s) in steps.iter().enumerate() {
                until += s.pause;
                if elapsed < until {
                    return Position {
                        weight: weight_of(s.weight),
                        step: Some(i),
                        next_change: Some(r.start_time + until),
                        complete: false,
                    };
                }
            }
            done(steps.len().saturating_sub(1))
        }
        Schedule::Ramp(ramp) => {
            if elapsed >= ramp.over {
                return done(increments(ramp.over, ramp.every).saturating_sub(1) as usize);
            }
            let every = ramp.every.as_nanos().max(1);
            let k = elapsed.as_nanos() / every;
            let at = k * every;
            let share = at as f64 / ramp.over.as_nanos() as f64;
            let next = Duration::from_nanos(((k + 1) * every).min(ramp.over.as_nanos()) as u64);
            Position {
                weight: weight_of(ramp.from + (ramp.to - ramp.from) * share),
                step: Some(k as usize),
                next_change: Some(r.start_time + next),
                complete: false,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatehouse_config::{Analysis, ObjectId, Ramp, Step};

    fn id(name: &str) -> ObjectId {
        ObjectId {
            namespace: "default".into(),
            name: name.into(),
        }
    }

    fn at(s: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + s)
    }

    fn rollout(schedule: Schedule) -> Rollout {
        Rollout {
            id: id("r"),
            route: id("route"),
            rule: 0,
            stable: id("stable"),
            canary: id("canary"),
            start_time: at(0),
            schedule,
            analysis: Analysis {
                interval: Duration::from_secs(60),
                max_error_rate: 1.0,
                max_p99_ratio: 1.5,
                min_requests: 100,
            },
        }
    }

    fn steps() -> Rollout {
        let step = |weight, pause| Step {
            weight,
            pause: Duration::from_secs(pause),
        };
        rollout(Schedule::Steps(vec![
            step(5.0, 600),
            step(25.0, 1800),
            step(100.0, 0),
        ]))
    }

    #[test]
    fn before_the_start_the_canary_gets_nothing_and_the_start_is_the_next_change() {
        let p = position(&steps(), at(0) - Duration::from_secs(1));
        assert_eq!(p.weight, 0);
        assert_eq!(p.step, None);
        assert_eq!(p.next_change, Some(at(0)));
        assert!(!p.complete);
    }

    #[test]
    fn steps_hold_each_weight_for_its_pause_and_the_last_step_completes() {
        let r = steps();
        let cases = [
            (0, 500, Some(0), Some(600)),
            (599, 500, Some(0), Some(600)),
            (600, 2500, Some(1), Some(2400)),
            (2399, 2500, Some(1), Some(2400)),
        ];
        for (t, weight, step, next) in cases {
            let p = position(&r, at(t));
            assert_eq!(
                (p.weight, p.step, p.next_change, p.complete),
                (weight, step, next.map(at), false),
                "at +{t}s"
            );
        }
        let end = position(&r, at(2400));
        assert_eq!(
            (end.weight, end.step, end.next_change),
            (FULL, Some(2), None)
        );
        assert!(end.complete);
        assert_eq!(position(&r, at(99_999)), end);
    }

    #[test]
    fn a_ramp_climbs_in_increments_and_completes_after_over() {
        let r = rollout(Schedule::Ramp(Ramp {
            from: 5.0,
            to: 100.0,
            over: Duration::from_secs(24 * 3600),
            every: Duration::from_secs(600),
        }));
        assert_eq!(step_count(&r), 144);
        let p = position(&r, at(0));
        assert_eq!(
            (p.weight, p.step, p.next_change),
            (500, Some(0), Some(at(600)))
        );
        // Half way: 5 + 95 * 0.5 = 52.5 %.
        let p = position(&r, at(12 * 3600 + 599));
        assert_eq!((p.weight, p.step), (5250, Some(72)));
        assert_eq!(p.next_change, Some(at(12 * 3600 + 600)));
        let last = position(&r, at(24 * 3600 - 1));
        assert_eq!(last.next_change, Some(at(24 * 3600)));
        assert!(!last.complete);
        let end = position(&r, at(24 * 3600));
        assert!(end.complete);
        assert_eq!((end.weight, end.step), (FULL, Some(143)));
    }

    #[test]
    fn the_position_depends_on_the_time_only_so_replicas_agree() {
        let (a, b) = (steps(), steps());
        for t in (0..3000).step_by(7) {
            assert_eq!(position(&a, at(t)), position(&b, at(t)));
        }
    }
}
