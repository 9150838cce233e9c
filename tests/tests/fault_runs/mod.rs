//! Shared by the embedded fault tests (`embedded_pipeline.rs`, `world_pipeline.rs`): how a
//! test world is run, and the fault mix both inject.

use std::time::Duration;

use worldfleet_embedded::Durability;
use worldfleet_intake::RateLimit;
use worldfleet_runtime::RunOptions;
use worldfleet_runtime::resources::QueueSettings;
use worldfleet_testbed::WorldSpec;
use worldfleet_testbed::faults::FaultRates;

/// `world` run embedded as the fault tests run it: `workers` pollers per stage, writes
/// acknowledged after fsync, a rate limit the world never reaches, two minutes to drain.
pub fn run_options(world: WorldSpec, workers: usize) -> RunOptions {
    let mut options = RunOptions::new(world);
    options.workers_per_stage = workers;
    options.durability = Durability::Sync;
    options.rate_limit = RateLimit {
        burst: 10_000,
        per_second: 10_000,
    };
    // Short visibility so expired-visibility faults resolve quickly. Ten receives before the
    // dead-letter queue (production: five): at these fault rates a message can fail five times
    // running by chance, and these tests are about idempotency, not redrive (the queue
    // contract suite covers redrive).
    options.queues = QueueSettings {
        visibility_timeout: Duration::from_secs(2),
        max_receive_count: 10,
    };
    options.drain_timeout = Duration::from_secs(120);
    options
}

/// `options` with the fault mix, decided from `seed` — 1 % crashes before and after writes and
/// sends, 5 % lost deletes, 1 % batches outliving their visibility — and the whole process
/// killed and reopened once after `restart_after` envelopes.
pub fn with_faults(mut options: RunOptions, seed: u64, restart_after: u64) -> RunOptions {
    options.faults = Some((
        FaultRates {
            crash_before_write: 0.01,
            crash_after_write: 0.01,
            lose_delete: 0.05,
            outlive_visibility: 0.01,
        },
        seed,
    ));
    options.restart_after = Some(restart_after);
    options
}
