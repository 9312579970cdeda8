//! A recording discovery sink: what a provider reported, in order, and waits on it with a
//! deadline (readiness by polling, never a guessed sleep).

use gatehouse_config::Discovery;
use gatehouse_gateway::discovery::{Discovered, Sink};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One call a provider made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// `update`, the set written as `address*weight` strings, sorted.
    Update(Vec<String>),
    /// `failed` with its message.
    Failed(String),
}

/// Records every call.
#[derive(Default)]
pub struct Recorder {
    calls: Mutex<Vec<Call>>,
}

impl Sink for Recorder {
    fn update(&self, endpoints: Vec<Discovered>) {
        let mut set: Vec<String> = endpoints
            .iter()
            .map(|e| format!("{}*{}", e.address, e.weight))
            .collect();
        set.sort();
        self.calls.lock().unwrap().push(Call::Update(set));
    }

    fn failed(&self, error: String) {
        self.calls.lock().unwrap().push(Call::Failed(error));
    }
}

/// How long a wait may take before the test fails: generous, since the machine is shared.
const DEADLINE: Duration = Duration::from_secs(20);

impl Recorder {
    /// A new recorder, shareable with a provider.
    pub fn new() -> Arc<Recorder> {
        Arc::new(Recorder::default())
    }

    /// Every call so far.
    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    /// Waits until the calls so far satisfy `cond`; panics with them after the deadline.
    pub async fn wait(&self, what: &str, cond: impl Fn(&[Call]) -> bool) {
        let start = Instant::now();
        while !cond(&self.calls()) {
            if start.elapsed() > DEADLINE {
                panic!("timed out waiting for {what}; calls: {:#?}", self.calls());
            }
            // Polling the recorder; the provider runs on another task meanwhile.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits until the last call is an update to exactly `set` (`address*weight` strings, any
    /// order) and returns how long that took.
    pub async fn wait_for_set(&self, set: &[&str]) -> Duration {
        let start = Instant::now();
        let mut want: Vec<String> = set.iter().map(|s| s.to_string()).collect();
        want.sort();
        let what = format!("the set {want:?}");
        self.wait(&what, |calls| {
            calls.last() == Some(&Call::Update(want.clone()))
        })
        .await;
        start.elapsed()
    }

    /// Waits until the last call is a failure containing `text`, and returns its message.
    pub async fn wait_for_failure(&self, text: &str) -> String {
        let what = format!("a failure containing {text:?}");
        self.wait(
            &what,
            |calls| matches!(calls.last(), Some(Call::Failed(m)) if m.contains(text)),
        )
        .await;
        match self.calls().pop() {
            Some(Call::Failed(m)) => m,
            _ => unreachable!(),
        }
    }

    /// The number of `update` calls so far.
    pub fn updates(&self) -> usize {
        self.calls()
            .iter()
            .filter(|c| matches!(c, Call::Update(_)))
            .count()
    }
}

/// The `discovery` of the only backend in `yaml` (manifests, loaded as if from `file`).
pub fn discovery_of(file: &str, yaml: &str) -> Discovery {
    let config = gatehouse_config::load_sources(&[gatehouse_config::SourceFile {
        name: file.into(),
        text: yaml.into(),
    }])
    .unwrap_or_else(|e| panic!("{e}"));
    config.backends[0]
        .discovery
        .clone()
        .expect("the backend has discovery")
}

/// `template` with each `{key}` replaced by its value: readable YAML in tests without `{{ }}`.
pub fn fill(template: &str, values: &[(&str, &str)]) -> String {
    values.iter().fold(template.to_string(), |t, (k, v)| {
        t.replace(&format!("{{{k}}}"), v)
    })
}
