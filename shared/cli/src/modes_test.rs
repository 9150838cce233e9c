//! Every run mode builds the same stages with the same settings from the same environment:
//! the embedded run, `worldfleet worker` and each Lambda binary all go through the registry,
//! so the model settings reach classify and compose whichever way a stage runs.

use std::collections::BTreeMap;
use std::sync::Arc;

use worldfleet_embedded::{EmbeddedStore, StoreOptions};
use worldfleet_kit::{Env, StageContext};
use worldfleet_ports::{Clock, ManualClock, Queue, Table};
use worldfleet_runtime::embedded::{embedded_settings, embedded_stage_set};
use worldfleet_runtime::{ModelChoice, RunOptions};
use worldfleet_stages::{BuiltStage, ClassifierSetting};
use worldfleet_testbed::WorldSpec;

const ENVIRONMENT: [(&str, &str); 5] = [
    (
        "WORLDFLEET_GATEWAY_KEYS",
        "gw-synthetic=00112233445566778899aabbccddeeff",
    ),
    ("WORLDFLEET_EMBEDDINGS_URL", "http://pool.invalid:8080"),
    ("WORLDFLEET_LLM_BASE_URL", "http://llm.invalid:11434"),
    ("WORLDFLEET_LLM_MODEL", "studio-model"),
    ("WORLDFLEET_FEED_RETENTION_DAYS", "3"),
];

fn context() -> (tempfile::TempDir, EmbeddedStore, StageContext) {
    let dir = tempfile::tempdir().unwrap();
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(1_000_000));
    let options = StoreOptions {
        janitor_interval: None,
        ..StoreOptions::default()
    };
    let store = EmbeddedStore::open(dir.path(), Arc::clone(&clock), options).unwrap();
    let queue: Arc<dyn Queue> = store.queue();
    let table: Arc<dyn Table> = store.table();
    (dir, store, StageContext::new(queue, table, clock))
}

#[tokio::test]
async fn worker_lambda_and_embedded_run_build_the_same_stages_from_one_environment() {
    let vars: BTreeMap<&str, &str> = ENVIRONMENT.into_iter().collect();
    let lookup = |name: &str| vars.get(name).map(|value| (*value).to_owned());
    let env = Env::from_lookup(&lookup);
    let (_dir, _store, context) = context();

    let worker = crate::worker::worker_stages(&["all".to_owned()], &context, &env)
        .await
        .unwrap();
    let mut worker_lines = worker.describe();
    worker_lines.sort();
    let mut names = worker.names();
    names.sort();
    let mut registered = worldfleet_stages::all_names();
    registered.sort();
    assert_eq!(names, registered);

    // Each Lambda binary builds its one stage.
    let mut lambda_lines = Vec::new();
    for name in worldfleet_stages::all_names() {
        match worldfleet_lambda::lambda_stage(name, &context, &env).unwrap() {
            BuiltStage::Input(handler) | BuiltStage::Timer(handler) => {
                lambda_lines.push(handler.describe())
            }
            BuiltStage::Watchdog(watchdog) => {
                assert_eq!(watchdog.prune, worker.watchdog.as_ref().unwrap().prune);
                lambda_lines.push(format!(
                    "watchdog: every {} s, prune sweep daily",
                    watchdog.interval.as_secs()
                ));
            }
        }
    }
    lambda_lines.sort();
    assert_eq!(lambda_lines, worker_lines);

    // The embedded run: the same settings, its own gateway key and world clock.
    let mut options = RunOptions::new(WorldSpec::small(1));
    options.world.world_every = 5;
    let settings = embedded_settings(&options, &env).unwrap();
    assert!(matches!(settings.classifier, ClassifierSetting::Pool(_)));
    let (classifier, _) = worldfleet_runtime::models::classifier(
        ModelChoice::Auto,
        &settings.classifier,
        Arc::clone(&context.clock),
    )
    .unwrap();
    let mut settings = settings;
    settings.classifier = ClassifierSetting::Given(classifier);
    let (embedded, _, _) = embedded_stage_set(&options, &settings, &context).unwrap();
    let embedded_lines = embedded.describe();
    for stage in ["classify", "compose"] {
        let line = |lines: &[String]| {
            lines
                .iter()
                .find(|line| line.starts_with(&format!("{stage}: ")))
                .cloned()
                .unwrap()
        };
        assert_eq!(line(&embedded_lines), line(&worker_lines), "{stage}");
    }
    let classify = worker_lines
        .iter()
        .find(|l| l.starts_with("classify"))
        .unwrap();
    assert!(classify.contains("pool.invalid"), "{classify}");
    let compose = worker_lines
        .iter()
        .find(|l| l.starts_with("compose"))
        .unwrap();
    assert!(compose.contains("studio-model"), "{compose}");
    // prune and the watchdog's sweep read the same retention in every mode.
    let retention = std::time::Duration::from_secs(3 * 24 * 3600);
    assert_eq!(
        embedded.watchdog.as_ref().unwrap().prune.feed_retention,
        retention
    );
    assert_eq!(
        worker.watchdog.as_ref().unwrap().prune.feed_retention,
        retention
    );
}

#[test]
fn the_worker_runs_every_stage_unless_told_otherwise() {
    assert_eq!(
        crate::worker::stage_names(&["all".to_owned()]),
        worldfleet_stages::all_names()
    );
    assert_eq!(
        crate::worker::stage_names(&[" intake".to_owned(), "prune ".to_owned()]),
        ["intake", "prune"]
    );
}
