//! Discovery from Kubernetes (`discovery: {kubernetes: {service, port, namespace}}`): the ready
//! endpoints of a Service's EndpointSlices, listed and then watched from the list's
//! resourceVersion, the way kube-rs' watcher does.
//!
//! A lean client over hyper instead of kube-rs: two GET requests and a line-per-event stream need
//! no generated API types (`k8s-openapi` and kube's client stack would be the largest build cost
//! of the gateway). The API server is found in-cluster (service account). Tests drive it against a
//! stand-in API server (a small Python HTTP server): no real API server installs here.

use super::{Backoff, Discovered, Reporter, Sink};
use gatehouse_config::KubernetesPort;
use http_body_util::BodyExt;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

mod api;
#[cfg(test)]
mod tests;

pub(crate) use api::Api;

/// What to watch.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(crate) service: String,
    pub(crate) port: KubernetesPort,
    pub(crate) namespace: String,
}

/// Runs until aborted. `api` is `None` to find the API server in-cluster.
pub(crate) async fn run(api: Option<Api>, target: Target, sink: Arc<dyn Sink>) {
    let mut reporter = Reporter::new(sink);
    let mut backoff = Backoff::new();
    let what = format!("kubernetes {}/{}", target.namespace, target.service);
    loop {
        let found = match &api {
            Some(a) => Ok(a.clone()),
            None => Api::in_cluster(),
        };
        let result = match found {
            Ok(api) => session(&api, &target, &mut reporter, &mut backoff).await,
            Err(e) => Err(e),
        };
        match result {
            // The server ended the watch (it does so every few minutes): list and watch again.
            Ok(()) => continue,
            Err(e) => reporter.failed(format!("{what}: {e}")),
        }
        tokio::time::sleep(backoff.next_delay()).await;
    }
}

/// The endpoints of each slice, by slice name.
type Slices = BTreeMap<String, Vec<Discovered>>;

/// One list and watch. `Ok` when the server closed the watch; `Err` on any failure.
async fn session(
    api: &Api,
    target: &Target,
    reporter: &mut Reporter,
    backoff: &mut Backoff,
) -> Result<(), String> {
    let path = format!(
        "/apis/discovery.k8s.io/v1/namespaces/{}/endpointslices?labelSelector=kubernetes.io%2Fservice-name%3D{}",
        target.namespace, target.service
    );
    let body = api
        .get(&path)
        .await?
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    let list: SliceList = serde_json::from_slice(&body.to_bytes())
        .map_err(|e| format!("unexpected EndpointSlice list: {e}"))?;
    let mut slices: Slices = list
        .items
        .iter()
        .map(|s| (s.metadata.name.clone(), ready(s, &target.port)))
        .collect();
    report(&slices, reporter);
    backoff.reset();
    let watch = format!(
        "{path}&watch=true&allowWatchBookmarks=true&resourceVersion={}",
        list.metadata.resource_version
    );
    let mut stream = api.get(&watch).await?;
    let mut buffer: Vec<u8> = Vec::new();
    while let Some(frame) = stream.frame().await {
        let frame = frame.map_err(|e| format!("watch: {e}"))?;
        let Some(data) = frame.data_ref() else {
            continue;
        };
        buffer.extend_from_slice(data);
        // One JSON event per line; a line may span frames.
        while let Some(end) = buffer.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buffer.drain(..=end).collect();
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            apply(&line, &mut slices, &target.port)?;
            report(&slices, reporter);
        }
    }
    Ok(())
}

/// Applies one watch event.
fn apply(line: &[u8], slices: &mut Slices, port: &KubernetesPort) -> Result<(), String> {
    let event: WatchEvent =
        serde_json::from_slice(line).map_err(|e| format!("unexpected watch event: {e}"))?;
    match event.kind.as_str() {
        "ADDED" | "MODIFIED" | "DELETED" => {
            let slice: Slice = serde_json::from_value(event.object)
                .map_err(|e| format!("unexpected EndpointSlice: {e}"))?;
            if event.kind == "DELETED" {
                slices.remove(&slice.metadata.name);
            } else {
                slices.insert(slice.metadata.name.clone(), ready(&slice, port));
            }
            Ok(())
        }
        "BOOKMARK" => Ok(()),
        // `410 Gone` (our resourceVersion is too old) and every other error: list again.
        _ => Err(format!(
            "watch error: {}",
            event
                .object
                .get("message")
                .and_then(|m| m.as_str())
                .unwrap_or("no message")
        )),
    }
}

fn report(slices: &Slices, reporter: &mut Reporter) {
    reporter.update(slices.values().flatten().cloned().collect());
}

/// The ready endpoints of one slice with the port the backend names. A `ready` condition that
/// is not set counts as ready, as the EndpointSlice API says consumers should treat it.
fn ready(slice: &Slice, port: &KubernetesPort) -> Vec<Discovered> {
    if !matches!(slice.address_type.as_str(), "IPv4" | "IPv6") {
        return Vec::new();
    }
    let number = slice.ports.iter().find_map(|p| {
        let wanted = match port {
            KubernetesPort::Name(n) => p.name.as_deref().unwrap_or("") == n,
            // A number names the endpoints' (target) port: slices carry no Service port numbers.
            KubernetesPort::Number(n) => p.port == Some(*n),
        };
        wanted.then_some(p.port).flatten()
    });
    let Some(number) = number else {
        return Vec::new();
    };
    slice
        .endpoints
        .iter()
        .filter(|e| e.conditions.ready != Some(false))
        .flat_map(|e| e.addresses.iter())
        .filter_map(|a| a.parse::<IpAddr>().ok())
        .map(|ip| Discovered {
            address: SocketAddr::new(ip, number),
            weight: 1,
        })
        .collect()
}

#[derive(Deserialize)]
struct SliceList {
    metadata: ListMeta,
    #[serde(default)]
    items: Vec<Slice>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListMeta {
    #[serde(default)]
    resource_version: String,
}

#[derive(Deserialize)]
struct WatchEvent {
    #[serde(rename = "type")]
    kind: String,
    object: serde_json::Value,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Slice {
    metadata: ObjectMeta,
    address_type: String,
    #[serde(default)]
    endpoints: Vec<Endpoint>,
    #[serde(default)]
    ports: Vec<Port>,
}

#[derive(Deserialize)]
struct ObjectMeta {
    name: String,
}

#[derive(Deserialize)]
struct Endpoint {
    addresses: Vec<String>,
    #[serde(default)]
    conditions: Conditions,
}

#[derive(Deserialize, Default)]
struct Conditions {
    #[serde(default)]
    ready: Option<bool>,
}

#[derive(Deserialize)]
struct Port {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    port: Option<u16>,
}
