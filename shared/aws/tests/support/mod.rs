//! Shared set-up of the emulator-backed tests: the gate, unique stack prefixes, adapters.
#![allow(dead_code)]

use std::io::Write;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use worldfleet_aws::{AwsSettings, DynamoTable, RetryPolicy, SqsQueue};

/// The variable `scripts/test-aws.sh` sets once LocalStack and DynamoDB Local answer.
pub const GATE: &str = "WORLDFLEET_LOCAL_AWS";

/// True when the emulators are up; otherwise prints a loud skip line for `test`.
pub fn local_aws(test: &str) -> bool {
    if std::env::var(GATE).is_ok_and(|value| value == "1") {
        return true;
    }
    // Written to the stream directly: libtest captures `eprintln!` of passing tests.
    let _ = writeln!(
        std::io::stderr(),
        "\n*** SKIPPED {test}: needs LocalStack + DynamoDB Local; run scripts/test-aws.sh \
         (or localstack/start.sh, `. localstack/env.sh` and {GATE}=1) ***\n"
    );
    false
}

/// A stack prefix no other test (or earlier run) uses.
pub fn unique_stack(label: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.subsec_nanos());
    format!(
        "wft-{label}-{}-{nanos:x}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Settings from the environment under a fresh stack prefix, with quick retries.
pub fn settings(label: &str) -> AwsSettings {
    let mut settings = AwsSettings::from_env()
        .expect("settings from the environment")
        .with_stack(&unique_stack(label));
    settings.retry = RetryPolicy {
        max_attempts: 4,
        ..RetryPolicy::default()
    };
    settings
}

/// Both adapters under one fresh stack prefix.
pub async fn adapters(label: &str) -> (SqsQueue, DynamoTable) {
    let settings = settings(label);
    let config = settings.sdk_config().await;
    (
        SqsQueue::from_sdk_config(&config, settings.clone()),
        DynamoTable::from_sdk_config(&config, settings),
    )
}
