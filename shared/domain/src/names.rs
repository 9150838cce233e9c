//! Logical names of the queues and tables every deployment has.
//!
//! Adapters map a logical name to a physical one (a stack prefix, a queue URL); stages only
//! ever use these constants.

/// FIFO queue gateways post envelopes to; message group = partition UID.
pub const INTAKE_QUEUE: &str = "intake.fifo";
/// Accepted narrative events waiting for classification.
pub const CLASSIFY_QUEUE: &str = "classify.fifo";
/// Classified events waiting for composition.
pub const COMPOSE_QUEUE: &str = "compose.fifo";
/// Canon waiting to be published to feeds.
pub const DISTRIBUTE_QUEUE: &str = "distribute.fifo";
/// Garbage-collection work keyed by partition: events published, feeds past retention, player
/// memory over budget, regions idle or active again.
pub const PRUNE_QUEUE: &str = "prune.fifo";

/// Trades routed from intake, waiting for their station's market (FIFO; group = station UID).
pub const MARKET_QUEUE: &str = "market.fifo";
/// Window-end timers of station markets (standard: per-message delays of 1 s and more).
pub const PRICE_WINDOW_QUEUE: &str = "price-window";
/// Production-tick timers of regions (standard: 12 s delays).
pub const PRODUCTION_TICK_QUEUE: &str = "production-tick";
/// Captures and breed requests from intake and migrants from neighbouring cells
/// (FIFO; group = cell UID).
pub const ECOLOGY_INPUT_QUEUE: &str = "ecology-input.fifo";
/// Ecology tick timers of cells (standard: 5–15 s delays).
pub const ECOLOGY_TICK_QUEUE: &str = "ecology-tick";

/// The dead-letter queue of a FIFO queue (`intake.fifo` → `intake-dlq.fifo`).
pub fn dead_letter_queue(queue: &str) -> String {
    match queue.strip_suffix(".fifo") {
        Some(stem) => format!("{stem}-dlq.fifo"),
        None => format!("{queue}-dlq"),
    }
}

/// Each partition's append-only event ledger (pk = partition UID, sk = event id).
pub const LEDGER_TABLE: &str = "ledger";
/// Refused envelopes with their reason codes (pk = gateway, sk = rejection id).
pub const REJECTIONS_TABLE: &str = "rejections";
/// Idempotency records of the batch kit (pk = `stage#key`).
pub const IDEMPOTENCY_TABLE: &str = "idempotency";
/// Composed canon, one item per event (pk = partition UID, sk = event id).
pub const CANON_TABLE: &str = "canon";
/// Feed pages, sequence counters and reader checkpoints (pk = feed id).
pub const FEEDS_TABLE: &str = "feeds";
/// Per-player token buckets and other intake state (pk = `player#id`).
pub const RATE_LIMITS_TABLE: &str = "ratelimits";
/// Player memory: observations with their sizes and each player's byte count
/// (pk = `player#id`).
pub const MEMORY_TABLE: &str = "memory";
/// What prune sweeps and keeps: region activity records, the feed index and region
/// tombstones (pk = `activity#shard`, `parts#region`, `feeds#shard`, `tombstone#region`).
pub const PRUNE_TABLE: &str = "prune";

/// Station markets: state, one record per transaction, one per recompute (pk = station UID).
pub const MARKET_TABLE: &str = "market";
/// Regional production: planets and the region marker (pk = region UID).
pub const PRODUCTION_TABLE: &str = "production";
/// Cells: state, pending and consumed inputs, captured creatures (pk = cell UID).
pub const ECOLOGY_TABLE: &str = "ecology";
/// The registry of timer chains the watchdog re-arms (pk = `chain#KIND`, sk = partition).
pub const TIMERS_TABLE: &str = "timers";

/// The tables of the world simulation (ecology, market, production), declared beside
/// [`ALL_TABLES`].
pub const WORLD_TABLES: [&str; 4] = [MARKET_TABLE, PRODUCTION_TABLE, ECOLOGY_TABLE, TIMERS_TABLE];

/// The work queues of the world simulation, declared beside [`ALL_QUEUES`] (each with a
/// dead-letter queue). The timer queues are standard queues: FIFO queues refuse delays.
pub const WORLD_QUEUES: [&str; 5] = [
    MARKET_QUEUE,
    PRICE_WINDOW_QUEUE,
    PRODUCTION_TICK_QUEUE,
    ECOLOGY_INPUT_QUEUE,
    ECOLOGY_TICK_QUEUE,
];

/// The watchdog's trigger: a schedule (EventBridge, once a minute), not a queue.
pub const WATCHDOG_SCHEDULE: &str = "schedule:rate(1 minute)";

/// Every table a deployment declares.
pub const ALL_TABLES: [&str; 8] = [
    LEDGER_TABLE,
    REJECTIONS_TABLE,
    IDEMPOTENCY_TABLE,
    CANON_TABLE,
    FEEDS_TABLE,
    RATE_LIMITS_TABLE,
    MEMORY_TABLE,
    PRUNE_TABLE,
];

/// Every work queue a deployment declares (each has a dead-letter queue beside it).
pub const ALL_QUEUES: [&str; 5] = [
    INTAKE_QUEUE,
    CLASSIFY_QUEUE,
    COMPOSE_QUEUE,
    DISTRIBUTE_QUEUE,
    PRUNE_QUEUE,
];

/// What one stage function touches: the source of truth for least-privilege roles, checked
/// against `infra/template.yaml` by the template test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StageResources {
    /// The stage's name (`intake`, `classify`, …), also its function crate and binary name.
    pub stage: &'static str,
    /// The queue whose messages trigger it.
    pub consumes: &'static str,
    /// Queues it sends to.
    pub sends_to: &'static [&'static str],
    /// Tables it only reads.
    pub reads: &'static [&'static str],
    /// Tables it writes (and may read).
    pub writes: &'static [&'static str],
}

/// Every stage and what it touches.
pub const STAGES: [StageResources; 10] = [
    StageResources {
        stage: "intake",
        consumes: INTAKE_QUEUE,
        sends_to: &[CLASSIFY_QUEUE, MARKET_QUEUE, ECOLOGY_INPUT_QUEUE],
        reads: &[],
        writes: &[LEDGER_TABLE, REJECTIONS_TABLE, RATE_LIMITS_TABLE],
    },
    StageResources {
        stage: "classify",
        consumes: CLASSIFY_QUEUE,
        sends_to: &[COMPOSE_QUEUE],
        reads: &[],
        writes: &[],
    },
    StageResources {
        stage: "compose",
        consumes: COMPOSE_QUEUE,
        sends_to: &[DISTRIBUTE_QUEUE],
        reads: &[],
        writes: &[CANON_TABLE],
    },
    StageResources {
        stage: "distribute",
        consumes: DISTRIBUTE_QUEUE,
        sends_to: &[PRUNE_QUEUE],
        reads: &[],
        writes: &[CANON_TABLE, FEEDS_TABLE, MEMORY_TABLE, PRUNE_TABLE],
    },
    StageResources {
        stage: "prune",
        consumes: PRUNE_QUEUE,
        sends_to: &[],
        reads: &[],
        writes: &[
            LEDGER_TABLE,
            CANON_TABLE,
            FEEDS_TABLE,
            MEMORY_TABLE,
            PRUNE_TABLE,
        ],
    },
    StageResources {
        stage: "market",
        consumes: MARKET_QUEUE,
        sends_to: &[PRICE_WINDOW_QUEUE],
        reads: &[],
        writes: &[MARKET_TABLE, TIMERS_TABLE],
    },
    StageResources {
        stage: "price-window",
        consumes: PRICE_WINDOW_QUEUE,
        sends_to: &[PRICE_WINDOW_QUEUE],
        reads: &[],
        writes: &[MARKET_TABLE],
    },
    StageResources {
        stage: "production",
        consumes: PRODUCTION_TICK_QUEUE,
        sends_to: &[PRODUCTION_TICK_QUEUE],
        reads: &[],
        writes: &[PRODUCTION_TABLE, IDEMPOTENCY_TABLE],
    },
    StageResources {
        stage: "ecology-input",
        consumes: ECOLOGY_INPUT_QUEUE,
        sends_to: &[],
        reads: &[],
        writes: &[ECOLOGY_TABLE],
    },
    StageResources {
        stage: "ecology",
        consumes: ECOLOGY_TICK_QUEUE,
        sends_to: &[ECOLOGY_INPUT_QUEUE, ECOLOGY_TICK_QUEUE, DISTRIBUTE_QUEUE],
        reads: &[],
        writes: &[ECOLOGY_TABLE, CANON_TABLE, IDEMPOTENCY_TABLE],
    },
];

/// The feed API's function (invoked by API Gateway, not by a queue): it reads feed pages and
/// writes reader checkpoints in [`FEEDS_TABLE`], and touches nothing else.
pub const FEEDS_API_FUNCTION: &str = "feeds";

/// The watchdog (scheduled once a minute): re-arms timer chains that went quiet, and once a day
/// runs prune's sweep (claiming it in the prune table, asking prune through its queue).
pub const WATCHDOG: StageResources = StageResources {
    stage: "watchdog",
    consumes: WATCHDOG_SCHEDULE,
    sends_to: &[
        ECOLOGY_TICK_QUEUE,
        PRICE_WINDOW_QUEUE,
        PRODUCTION_TICK_QUEUE,
        PRUNE_QUEUE,
    ],
    reads: &[TIMERS_TABLE, ECOLOGY_TABLE, MARKET_TABLE, PRODUCTION_TABLE],
    writes: &[PRUNE_TABLE],
};
