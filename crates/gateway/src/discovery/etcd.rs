//! Discovery from etcd (`discovery: {etcd: {endpoints, prefix}}`): one key per instance under the
//! prefix, each value a JSON `{"address": "10.0.0.1:8080", "weight": 2}` (weight optional).
//!
//! A session lists the prefix, then watches it from the list's revision + 1, so no change between
//! the two is lost. When the connection or the watch breaks (etcd restarted, the revision was
//! compacted), the last set stays in use and a new session lists and watches again after a backoff.

use super::{Backoff, Discovered, Reporter, Sink};
use etcd_client::{Client, ConnectOptions, EventType, GetOptions, WatchOptions};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Runs until aborted.
pub(crate) async fn run(endpoints: Vec<String>, prefix: String, sink: Arc<dyn Sink>) {
    let mut reporter = Reporter::new(sink);
    let mut backoff = Backoff::new();
    loop {
        let error = session(&endpoints, &prefix, &mut reporter, &mut backoff).await;
        reporter.failed(format!("etcd {} {prefix}: {error}", endpoints.join(",")));
        tokio::time::sleep(backoff.next_delay()).await;
    }
}

/// The instances under the prefix, by key: `Err` for a value that is not a valid instance.
type Instances = BTreeMap<String, Result<Discovered, String>>;

/// One connection: list, report, watch and report each change. Returns why it ended.
async fn session(
    endpoints: &[String],
    prefix: &str,
    reporter: &mut Reporter,
    backoff: &mut Backoff,
) -> String {
    let options = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(2))
        // A peer that vanished without closing the connection is noticed within ten seconds.
        .with_keep_alive(Duration::from_secs(5), Duration::from_secs(5))
        .with_keep_alive_while_idle(true);
    let mut client = match Client::connect(endpoints, Some(options)).await {
        Ok(c) => c,
        Err(e) => return e.to_string(),
    };
    let listed = match client
        .get(prefix, Some(GetOptions::new().with_prefix()))
        .await
    {
        Ok(l) => l,
        Err(e) => return e.to_string(),
    };
    let revision = listed.header().map_or(0, |h| h.revision());
    let mut instances = Instances::new();
    for kv in listed.kvs() {
        instances.insert(key(kv.key()), instance(kv.value()));
    }
    report(&instances, reporter);
    backoff.reset();
    let watch = WatchOptions::new()
        .with_prefix()
        .with_start_revision(revision + 1);
    let mut stream = match client.watch(prefix, Some(watch)).await {
        Ok(s) => s,
        Err(e) => return e.to_string(),
    };
    loop {
        let response = match stream.message().await {
            Ok(Some(r)) => r,
            Ok(None) => return "the watch ended".into(),
            Err(e) => return e.to_string(),
        };
        if response.canceled() {
            // Compacted past our revision, or cancelled by the server: list again.
            return format!("the watch was cancelled: {}", response.cancel_reason());
        }
        for event in response.events() {
            let Some(kv) = event.kv() else { continue };
            match event.event_type() {
                EventType::Put => instances.insert(key(kv.key()), instance(kv.value())),
                EventType::Delete => instances.remove(&key(kv.key())),
            };
        }
        report(&instances, reporter);
    }
}

fn report(instances: &Instances, reporter: &mut Reporter) {
    let set = instances.values().filter_map(|i| i.clone().ok()).collect();
    let bad: Vec<String> = instances
        .iter()
        .filter_map(|(k, i)| i.as_ref().err().map(|e| format!("{k}: {e}")))
        .collect();
    let problem = (!bad.is_empty()).then(|| format!("skipped invalid values: {}", bad.join("; ")));
    reporter.update_with(set, problem);
}

fn key(k: &[u8]) -> String {
    String::from_utf8_lossy(k).into_owned()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Value {
    address: String,
    #[serde(default)]
    weight: Option<u32>,
}

/// A key's value as an instance, or why it is not one.
fn instance(value: &[u8]) -> Result<Discovered, String> {
    let v: Value = serde_json::from_slice(value)
        .map_err(|e| format!("expected JSON {{\"address\": \"IP:port\", \"weight\": N}}: {e}"))?;
    let address: SocketAddr = v
        .address
        .parse()
        .map_err(|_| format!("invalid address `{}`: expected IP:port", v.address))?;
    match v.weight {
        Some(0) => Err("weight must be at least 1".into()),
        w => Ok(Discovered {
            address,
            weight: w.unwrap_or(1),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_json_instances() {
        let ok = instance(br#"{"address": "10.0.0.1:80", "weight": 3}"#).unwrap();
        assert_eq!(ok.weight, 3);
        assert_eq!(
            instance(br#"{"address": "10.0.0.1:80"}"#).unwrap().weight,
            1
        );
        for bad in [
            &br#"10.0.0.1:80"#[..],
            br#"{"address": "tasks:80"}"#,
            br#"{"address": "10.0.0.1:80", "weight": 0}"#,
            br#"{"adress": "10.0.0.1:80"}"#,
        ] {
            assert!(instance(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }
}
