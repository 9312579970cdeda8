//! The controller under tokio's paused clock: the schedule's steps arrive at their times, a
//! failing canary is rolled back at the first analysis that may judge it, operators' actions.

use super::*;
use crate::routing::rollout::FULL;
use gatehouse_config::{Analysis, Schedule, Step};

fn id(name: &str) -> ObjectId {
    ObjectId {
        namespace: "default".into(),
        name: name.into(),
    }
}

/// Steps of 10 % and 50 % held a minute each from `start_in` seconds from now, then 100 %.
fn state(start_in: u64, min_requests: u64) -> Arc<RolloutState> {
    let clock = Clock::Tokio {
        wall: SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
        base: tokio::time::Instant::now(),
    };
    let step = |weight, pause| Step {
        weight,
        pause: Duration::from_secs(pause),
    };
    let spec = Rollout {
        id: id("r"),
        route: id("route"),
        rule: 0,
        stable: id("stable"),
        canary: id("canary"),
        start_time: clock.now() + Duration::from_secs(start_in),
        schedule: Schedule::Steps(vec![step(10.0, 60), step(50.0, 60), step(100.0, 0)]),
        analysis: Analysis {
            interval: Duration::from_secs(5),
            max_error_rate: 1.0,
            max_p99_ratio: 1.5,
            min_requests,
        },
    };
    let s = RolloutState::new(spec, RolloutMetrics::default(), clock);
    tokio::spawn(run(Arc::downgrade(&s)));
    s
}

async fn at(secs: u64, start: tokio::time::Instant) {
    tokio::time::sleep_until(start + Duration::from_secs(secs)).await;
}

fn phase(s: &RolloutState) -> Phase {
    s.lock().phase
}

#[tokio::test(start_paused = true)]
async fn the_schedule_walks_every_step_at_its_time_and_promotes() {
    let t0 = tokio::time::Instant::now();
    let s = state(10, 1_000_000);
    assert_eq!((s.weight(), phase(&s)), (0, Phase::Progressing));
    at(9, t0).await;
    assert_eq!(s.weight(), 0, "before startTime");
    at(11, t0).await;
    assert_eq!(s.weight(), 1000);
    assert_eq!(s.lock().step, Some(0));
    at(69, t0).await;
    assert_eq!(s.weight(), 1000);
    at(71, t0).await;
    assert_eq!((s.weight(), s.lock().step), (5000, Some(1)));
    at(131, t0).await;
    assert_eq!((s.weight(), phase(&s)), (FULL, Phase::Promoted));
    assert!(s.lock().next_change.is_none());
}

#[tokio::test(start_paused = true)]
async fn a_canary_over_the_error_rate_is_rolled_back_at_the_next_analysis_and_stays_so() {
    let t0 = tokio::time::Instant::now();
    let s = state(0, 50);
    assert_eq!(s.weight(), 1000);
    // Too few requests yet: not judged, the window stays open.
    for _ in 0..40 {
        s.canary.record(500, 0.001);
    }
    at(6, t0).await;
    assert_eq!(phase(&s), Phase::Progressing);
    assert!(s.lock().last.is_none(), "nothing judged yet");
    for i in 0..60 {
        s.canary.record(if i % 5 == 0 { 500 } else { 200 }, 0.001);
        s.stable.record(200, 0.001);
    }
    at(11, t0).await;
    assert_eq!((phase(&s), s.weight()), (Phase::RolledBack, 0));
    let reason = s.lock().reason.clone().unwrap_or_default();
    assert!(
        reason.contains("error rate") && reason.contains("of 100 requests"),
        "{reason}"
    );
    // The schedule moves on; the rollback does not.
    at(200, t0).await;
    assert_eq!((phase(&s), s.weight()), (Phase::RolledBack, 0));
}

#[tokio::test(start_paused = true)]
async fn a_slower_canary_is_rolled_back_on_the_p99_ratio() {
    let t0 = tokio::time::Instant::now();
    let s = state(0, 100);
    for _ in 0..200 {
        s.canary.record(200, 0.050);
        s.stable.record(200, 0.010);
    }
    at(6, t0).await;
    assert_eq!(phase(&s), Phase::RolledBack);
    let reason = s.lock().reason.clone().unwrap_or_default();
    assert!(reason.contains("maxP99Ratio"), "{reason}");
}

#[tokio::test(start_paused = true)]
async fn operators_pause_resume_abort_and_promote() {
    let t0 = tokio::time::Instant::now();
    let s = state(0, 1_000_000);
    s.act(Action::Pause).unwrap();
    at(70, t0).await;
    assert_eq!(
        (phase(&s), s.weight()),
        (Phase::Paused, 1000),
        "paused holds the weight"
    );
    assert!(s.act(Action::Pause).is_err());
    s.act(Action::Resume).unwrap();
    assert_eq!(
        (phase(&s), s.weight()),
        (Phase::Progressing, 5000),
        "resume rejoins the schedule"
    );
    s.act(Action::Abort).unwrap();
    assert_eq!((phase(&s), s.weight()), (Phase::Aborted, 0));
    assert!(s.act(Action::Abort).is_err());
    s.act(Action::Promote).unwrap();
    assert_eq!((phase(&s), s.weight()), (Phase::Promoted, FULL));
    assert!(s.act(Action::Promote).is_err());
}
