//! Two `gatehouse run` processes given the same Rollout, sharing nothing: they report the same
//! canary weight, step and next change at the same moments, and move to the next step together,
//! because the schedule is a pure function of `startTime` and the time.

use gatehouse_testkit::discovery::fill;
use gatehouse_testkit::rollout::rollout_documents;
use gatehouse_testkit::{Client, Upstream};
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

mod common;
use common::{spawn, Running};

/// `t` as RFC 3339 in UTC with milliseconds (days to civil date: Howard Hinnant's algorithm).
fn rfc3339(t: SystemTime) -> String {
    let ms = t.duration_since(UNIX_EPOCH).unwrap().as_millis() as i64;
    let (days, rem) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let (h, m, s, milli) = (
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1000 % 60,
        rem % 1000,
    );
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{milli:03}Z")
}

/// Both replicas' config: listener `web`, the stable and canary backends, and the Rollout of
/// route `tasks-v1` from `start`: 10 % for 2 s, then 40 % for an hour.
fn write_config(dir: &Path, stable: &Upstream, canary: &Upstream, start: &str) {
    let schedule = fill(
        r#"
  startTime: "{start}"
  steps: [{weight: 10, pause: 2s}, {weight: 40, pause: 1h}, {weight: 100}]
"#,
        &[("start", start)],
    );
    let documents = rollout_documents(stable.addr, canary.addr, &schedule);
    common::write_config(
        dir,
        "  accessLog: {enabled: false}",
        "127.0.0.1:0",
        &documents,
    );
}

async fn rollout(c: &Client, p: &Running) -> Value {
    let r = c
        .get(&format!("http://{}/rollouts", p.admin), &[])
        .await
        .unwrap();
    r.json()["rollouts"][0].clone()
}

/// What two replicas must agree on.
fn view(r: &Value) -> (Value, Value, Value, Value) {
    (
        r["state"].clone(),
        r["canaryWeight"].clone(),
        r["step"].clone(),
        r["nextChange"].clone(),
    )
}

#[tokio::test]
async fn two_processes_given_the_same_rollout_report_the_same_weight_at_the_same_time() {
    let (stable, canary) = (
        Upstream::start("stable").await,
        Upstream::start("canary").await,
    );
    let start = SystemTime::now() + Duration::from_millis(2500);
    let step1 = start + Duration::from_secs(2);
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    for d in [&a_dir, &b_dir] {
        write_config(d.path(), &stable, &canary, &rfc3339(start));
    }
    let a = spawn(a_dir.path());
    let b = spawn(b_dir.path());
    let c = Client::new();
    // Read both side by side until well into step 1; when no schedule boundary falls between
    // the two reads, both must say exactly the same. Note when each first shows step 1.
    let boundaries = [start, step1];
    let (mut compared, mut first_40) = (0, [None, None]);
    // A controller applies a change when its timer fires: on a loaded machine up to a good part
    // of a second after the boundary. Reads that close to one are not compared (how far apart
    // the two replicas moved is measured below).
    let settle = Duration::from_secs(1);
    while SystemTime::now() < step1 + settle + Duration::from_millis(1500) {
        let before = SystemTime::now();
        let (ra, rb) = (rollout(&c, &a).await, rollout(&c, &b).await);
        let after = SystemTime::now();
        for (i, r) in [&ra, &rb].into_iter().enumerate() {
            if r["canaryWeight"] == 40.0 && first_40[i].is_none() {
                first_40[i] = Some(Instant::now());
            }
        }
        if boundaries
            .iter()
            .any(|t| before <= *t + settle && *t <= after)
        {
            continue;
        }
        assert_eq!(view(&ra), view(&rb), "replicas disagree between boundaries");
        let expected = if after < start {
            0.0
        } else if after < step1 {
            10.0
        } else {
            40.0
        };
        assert_eq!(ra["canaryWeight"], expected, "{ra}");
        compared += 1;
    }
    let [Some(ta), Some(tb)] = first_40 else {
        panic!("both replicas reach step 1: {first_40:?}");
    };
    let apart = if ta > tb { ta - tb } else { tb - ta };
    eprintln!("{compared} side-by-side reads agreed; step 1 first seen {apart:?} apart");
    assert!(compared > 20, "{compared}");
    // Both step on the wall clock, not on their own start: seconds of margin cover two late
    // timers and the reads' own delays on a loaded machine.
    assert!(apart < Duration::from_secs(1), "{apart:?}");
    let (ra, rb) = (rollout(&c, &a).await, rollout(&c, &b).await);
    assert_eq!(
        ra["nextChange"],
        Value::from(rfc3339(step1 + Duration::from_secs(3600)))
    );
    assert_eq!(view(&ra), view(&rb));
}
