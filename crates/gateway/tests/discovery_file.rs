//! File discovery against real files: edits are followed, a broken file keeps the last set and
//! is reported with its position, a fix is reported again.

use gatehouse_gateway::discovery;
use gatehouse_testkit::discovery::{discovery_of, Call, Recorder};
use gatehouse_testkit::wait_for;

const BACKEND: &str = r#"
apiVersion: gatehouse.dev/v1alpha1
kind: Backend
metadata: {name: tasks}
spec:
  discovery:
    file: {path: endpoints/tasks.yaml}
"#;

#[tokio::test]
async fn edits_are_followed_and_a_broken_file_keeps_the_last_set() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("endpoints")).unwrap();
    let file = dir.path().join("endpoints/tasks.yaml");
    std::fs::write(
        &file,
        "- 127.0.0.1:9001\n- {address: 127.0.0.1:9002, weight: 2}\n",
    )
    .unwrap();
    let manifest = dir.path().join("backends.yaml");
    let spec = discovery_of(&manifest.display().to_string(), BACKEND);
    let sink = Recorder::new();
    let _provider = discovery::spawn(&spec, sink.clone()).expect("a provider");

    sink.wait_for_set(&["127.0.0.1:9001*1", "127.0.0.1:9002*2"])
        .await;

    std::fs::write(&file, "- 127.0.0.1:9003\n").unwrap();
    sink.wait_for_set(&["127.0.0.1:9003*1"]).await;

    std::fs::write(&file, "- 127.0.0.1:9003\n- 127.0.0.1:99999\n").unwrap();
    let error = sink.wait_for_failure("invalid endpoint").await;
    assert!(
        error.starts_with(&format!("{}:2:3: ", file.display())),
        "{error}"
    );
    let updates = sink.updates();

    // Replaced by a rename, as editors do: still followed.
    let tmp = dir.path().join("endpoints/.tasks.yaml.tmp");
    std::fs::write(
        &tmp,
        "[\"127.0.0.1:9004\", {\"address\": \"127.0.0.1:9005\", \"weight\": 3}]",
    )
    .unwrap();
    std::fs::rename(&tmp, &file).unwrap();
    sink.wait_for_set(&["127.0.0.1:9004*1", "127.0.0.1:9005*3"])
        .await;
    assert_eq!(sink.updates(), updates + 1, "{:#?}", sink.calls());
    let failures = sink
        .calls()
        .iter()
        .filter(|c| matches!(c, Call::Failed(_)))
        .count();
    assert_eq!(
        failures,
        1,
        "one failure per state change: {:#?}",
        sink.calls()
    );
}

#[tokio::test]
async fn a_missing_file_is_reported_and_its_creation_followed() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("backends.yaml");
    let yaml = BACKEND.replace("endpoints/tasks.yaml", "tasks.json");
    let spec = discovery_of(&manifest.display().to_string(), &yaml);
    let sink = Recorder::new();
    let _provider = discovery::spawn(&spec, sink.clone()).expect("a provider");

    sink.wait_for_failure("cannot read").await;
    std::fs::write(dir.path().join("tasks.json"), r#"["127.0.0.1:9001"]"#).unwrap();
    sink.wait_for_set(&["127.0.0.1:9001*1"]).await;
}

#[tokio::test]
async fn a_dropped_provider_stops_reporting() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tasks.yaml");
    std::fs::write(&file, "- 127.0.0.1:9001\n").unwrap();
    let yaml = BACKEND.replace("endpoints/tasks.yaml", "tasks.yaml");
    let spec = discovery_of(&dir.path().join("b.yaml").display().to_string(), &yaml);
    let sink = Recorder::new();
    let provider = discovery::spawn(&spec, sink.clone()).expect("a provider");
    sink.wait_for_set(&["127.0.0.1:9001*1"]).await;
    drop(provider);
    // Stopped for good once every part of it (task, file watcher) has let go of the sink: from
    // then on nothing can report, however late a loaded machine would have run it. (A fixed
    // sleep proved nothing there: a provider still running might not have reported yet.)
    wait_for("the dropped provider lets go of the sink", || async {
        std::sync::Arc::strong_count(&sink) == 1
    })
    .await;
    let before = sink.calls();
    std::fs::write(&file, "- 127.0.0.1:9002\n").unwrap();
    assert_eq!(sink.calls(), before);
}
