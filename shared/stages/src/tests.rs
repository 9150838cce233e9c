//! The registry builds every stage, reads exactly the documented variables, and refuses what
//! it cannot build with a reason.

use std::collections::BTreeMap;
use std::sync::Arc;

use worldfleet_embedded::{EmbeddedStore, StoreOptions};
use worldfleet_kit::{Env, StageContext};
use worldfleet_ports::{Clock, ManualClock, Queue, Table};

use super::*;

const KEYS: &str = "gw-test=00112233445566778899aabbccddeeff";

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
    let context = StageContext::new(queue, table, clock);
    (dir, store, context)
}

fn env_of(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect()
}

#[test]
fn every_stage_is_registered_once_with_its_resources() {
    let names = all_names();
    assert_eq!(names.len(), STAGES.len() + 1);
    for stage in STAGES.iter().chain([&WATCHDOG]) {
        let entry = entry(stage.stage).expect("registered");
        assert_eq!(entry.resources, stage);
    }
    let mut unique = names.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), names.len(), "a stage registered twice");
    for name in NARRATIVE_STAGES {
        assert_eq!(entry(name).unwrap().role, StageRole::Input);
    }
}

#[tokio::test]
async fn every_stage_builds_from_one_environment() {
    let vars = env_of(&[("WORLDFLEET_GATEWAY_KEYS", KEYS)]);
    let lookup = |name: &str| vars.get(name).cloned();
    let settings = StageSettings::from_vars(&Env::from_lookup(&lookup)).unwrap();
    let (_dir, _store, context) = context();
    let set = build_stages(&all_names(), &context, &settings).unwrap();
    let inputs_then_timers: Vec<&str> = REGISTRY
        .iter()
        .filter(|entry| entry.role == StageRole::Input)
        .chain(
            REGISTRY
                .iter()
                .filter(|entry| entry.role != StageRole::Input),
        )
        .map(StageEntry::name)
        .collect();
    assert_eq!(set.names(), inputs_then_timers);
    assert!(set.production_latencies_us.is_some());
    let watchdog = set.watchdog.as_ref().expect("the watchdog");
    assert_eq!(watchdog.prune, settings.prune);
    for handler in set.inputs.iter().chain(&set.timers) {
        let entry = entry(handler.name()).unwrap();
        assert_eq!(handler.source_queue(), entry.resources.consumes);
    }
    let timers: Vec<&str> = set.timers.iter().map(|handler| handler.name()).collect();
    assert_eq!(timers, ["price-window", "production", "ecology"]);
}

#[tokio::test]
async fn the_model_settings_reach_classify_and_compose() {
    let vars = env_of(&[
        ("WORLDFLEET_EMBEDDINGS_URL", "http://pool.invalid:8080"),
        ("WORLDFLEET_LLM_BASE_URL", "http://llm.invalid:11434"),
        ("WORLDFLEET_LLM_MODEL", "tiny"),
    ]);
    let lookup = |name: &str| vars.get(name).cloned();
    let settings = StageSettings::from_vars(&Env::from_lookup(&lookup)).unwrap();
    let (_dir, _store, context) = context();
    let set = build_stages(&["compose", "classify"], &context, &settings).unwrap();
    let lines = set.describe();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines[0].starts_with("classify: ") && lines[0].contains("pool.invalid"),
        "{lines:?}"
    );
    assert!(
        lines[1].starts_with("compose: ") && lines[1].contains("tiny"),
        "{lines:?}"
    );
}

#[tokio::test]
async fn the_memory_cap_reaches_distribute_as_well_as_prune() {
    let vars = env_of(&[("WORLDFLEET_MEMORY_CAP_BYTES", "262144")]);
    let lookup = |name: &str| vars.get(name).cloned();
    let settings = StageSettings::from_vars(&Env::from_lookup(&lookup)).unwrap();
    assert_eq!(settings.prune.memory_cap_bytes, 262_144);
    let (_dir, _store, context) = context();
    let set = build_stages(&["distribute"], &context, &settings).unwrap();
    assert_eq!(
        set.describe(),
        ["distribute: asks prune to evict a player's memory past 262144 bytes"]
    );
}

#[tokio::test]
async fn what_cannot_be_built_is_refused_with_a_reason() {
    let (_dir, _store, context) = context();
    let empty = |_: &str| None;
    let settings = StageSettings::from_vars(&Env::from_lookup(&empty)).unwrap();
    let Err(error) = build_stage("intake", &context, &settings) else {
        panic!("intake built without gateway keys");
    };
    assert!(
        error.to_string().contains("WORLDFLEET_GATEWAY_KEYS"),
        "{error}"
    );
    let Err(error) = build_stages(&["classify", "clasify"], &context, &settings) else {
        panic!("an unknown stage was built");
    };
    assert!(error.to_string().contains("\"clasify\""), "{error}");
    assert!(error.to_string().contains("price-window"), "{error}");

    let bad = env_of(&[("WORLDFLEET_FEED_RETENTION_DAYS", "a week")]);
    let lookup = |name: &str| bad.get(name).cloned();
    let Err(error) = StageSettings::from_vars(&Env::from_lookup(&lookup)) else {
        panic!("an unusable retention was accepted");
    };
    let text = error.to_string();
    assert!(
        text.starts_with("prune: ") && text.contains("WORLDFLEET_FEED_RETENTION_DAYS"),
        "{text}"
    );
}

#[test]
fn the_settings_read_exactly_the_documented_variables() {
    // Every variable set, so every optional branch reads its variables.
    let vars = env_of(&[
        ("WORLDFLEET_GATEWAY_KEYS", KEYS),
        ("WORLDFLEET_EMBEDDINGS_URL", "http://pool.invalid:8080"),
        ("WORLDFLEET_LLM_BASE_URL", "http://llm.invalid:11434"),
    ]);
    let lookup = |name: &str| vars.get(name).cloned();
    let env = Env::recording(&lookup);
    StageSettings::from_vars(&env).unwrap();
    let read: Vec<String> = env.variables_read().into_iter().collect();
    let mut declared: Vec<String> = stage_variables()
        .into_iter()
        .map(|(_, variable)| variable.name.to_owned())
        .collect();
    declared.sort();
    assert_eq!(
        read, declared,
        "read by the code vs declared in variables::ALL"
    );
}

#[test]
fn the_readme_configuration_table_is_the_registry_s() {
    let readme_path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md");
    let readme = std::fs::read_to_string(readme_path).unwrap();
    let start = "<!-- configuration table: generated from shared/stages/src/variables.rs -->\n";
    let end = "<!-- end of configuration table -->";
    let from = readme
        .find(start)
        .expect("the README marks its configuration table")
        + start.len();
    let to = from + readme[from..].find(end).expect("the table's end marker");
    let expected = variables::markdown_table();
    assert!(
        readme[from..to] == expected,
        "the README's configuration table is out of date; replace it with:\n{expected}"
    );
}
