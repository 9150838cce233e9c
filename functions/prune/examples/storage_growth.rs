//! Storage growth over simulated months, with pruning on and off.
//!
//! Drives the real distribute and prune handlers on the embedded store with a manual clock, so
//! months pass in minutes: each simulated day, canon for `--events-per-day` events (scenes of
//! ten, three players each) is published by distribute; most players read and commit their
//! checkpoint daily, some never do; districts are active for a season and then go quiet. With
//! pruning on, prune handles everything distribute asks and the watchdog sweep runs daily; with
//! it off, prune's requests are dropped. Both modes run the store's TTL janitor daily (the
//! `ttl` attributes are set either way). Prints bytes on disk and live rows every sample.
//!
//! `cargo run --release -p worldfleet-prune --example storage_growth -- --pruning on`

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use worldfleet_distribute::{Distribute, RepublishRules};
use worldfleet_domain::names::{
    ALL_TABLES, CANON_TABLE, FEEDS_TABLE, MEMORY_TABLE, PRUNE_QUEUE, PRUNE_TABLE, dead_letter_queue,
};
use worldfleet_domain::{
    CanonEntry, DistributeRequest, EventKind, FeedId, Intent, PartitionUid, Tier,
};
use worldfleet_embedded::{Durability, EmbeddedStore, StoreOptions};
use worldfleet_kit::{StageContext, StageHandler};
use worldfleet_ports::{
    Clock, ManualClock, Query, Queue, QueueSpec, ReceiveRequest, ReceivedMessage, SortKeyRange,
    Table, TableSpec,
};
use worldfleet_prune::{Prune, PruneConfig};
use worldfleet_tables::canon;
use worldfleet_tables::feed::commit_checkpoint;
use worldfleet_tables::memory::{self, OBSERVATION_PREFIX};
use worldfleet_tables::read_feed;

const DAY_MS: u64 = 24 * 3600 * 1000;

struct Settings {
    pruning: bool,
    days: u64,
    events_per_day: u64,
    players: u64,
    districts: u64,
    season_days: u64,
    memory_cap_bytes: u64,
    sample_every: u64,
}

fn parse_args() -> anyhow::Result<Settings> {
    let mut settings = Settings {
        pruning: true,
        days: 240,
        events_per_day: 1_000,
        players: 200,
        districts: 12,
        season_days: 30,
        memory_cap_bytes: 256 * 1024,
        sample_every: 20,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    for pair in args.chunks(2) {
        let [flag, value] = pair else {
            anyhow::bail!("flags take a value: {pair:?}");
        };
        let number = || -> anyhow::Result<u64> {
            value
                .parse()
                .map_err(|error| anyhow::anyhow!("{flag} {value}: {error}"))
        };
        match flag.as_str() {
            "--pruning" => settings.pruning = value == "on",
            "--days" => settings.days = number()?,
            "--events-per-day" => settings.events_per_day = number()?.max(10),
            "--players" => settings.players = number()?.max(3),
            "--districts" => settings.districts = number()?.max(1),
            "--season-days" => settings.season_days = number()?.max(1),
            "--memory-cap-bytes" => settings.memory_cap_bytes = number()?,
            "--sample-every" => settings.sample_every = number()?.max(1),
            other => anyhow::bail!("unknown flag {other}"),
        }
    }
    Ok(settings)
}

/// Districts active on `day`: each is busy for a season, in turn, and district 0 always.
fn active_districts(settings: &Settings, day: u64) -> Vec<u64> {
    let mut active = vec![0];
    let rotating = settings.districts.saturating_sub(1).max(1);
    let current = 1 + (day / settings.season_days) % rotating;
    if current < settings.districts {
        active.push(current);
    }
    active
}

fn player(index: u64) -> String {
    format!("p-{index:05}")
}

struct Census {
    pages: usize,
    observations: usize,
    canon: usize,
}

async fn count(table: &dyn Table, table_name: &str, pk: &str, range: SortKeyRange) -> usize {
    let mut total = 0;
    let mut start_after = None;
    loop {
        let query = Query::partition(pk)
            .range(range.clone())
            .start_after(start_after);
        let Ok(page) = table.query(table_name, &query).await else {
            return total;
        };
        total += page.items.len();
        match page.last_evaluated_sk {
            Some(last) => start_after = Some(last),
            None => return total,
        }
    }
}

async fn drain_prune(queue: &dyn Queue, prune: Option<&Prune>) -> anyhow::Result<u64> {
    let mut handled = 0;
    loop {
        let messages = queue
            .receive(PRUNE_QUEUE, ReceiveRequest::batch(Duration::ZERO))
            .await?;
        if messages.is_empty() {
            return Ok(handled);
        }
        let failed: Vec<String> = match prune {
            Some(prune) => {
                prune
                    .handle_batch(&messages, Duration::from_secs(30))
                    .await
                    .failed_message_ids
            }
            None => Vec::new(),
        };
        let done: Vec<String> = messages
            .iter()
            .filter(|message| !failed.contains(&message.message_id))
            .map(|message| message.receipt_handle.clone())
            .collect();
        handled += done.len() as u64;
        queue.delete_batch(PRUNE_QUEUE, done).await?;
        if !failed.is_empty() {
            anyhow::bail!("prune failed {} requests", failed.len());
        }
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let settings = parse_args()?;
    let dir = tempfile::tempdir()?;
    let clock = ManualClock::new(1_763_700_000_000);
    let shared_clock: Arc<dyn Clock> = Arc::new(clock.clone());
    let options = StoreOptions {
        durability: Durability::Buffered,
        janitor_interval: None,
        ..StoreOptions::default()
    };
    let store = EmbeddedStore::open(dir.path(), Arc::clone(&shared_clock), options)?;
    let table: Arc<dyn Table> = store.table();
    for name in ALL_TABLES {
        table.ensure_table(&TableSpec { name: name.into() }).await?;
    }
    let queue: Arc<dyn Queue> = store.queue();
    let dead_letter = dead_letter_queue(PRUNE_QUEUE);
    queue
        .ensure_queue(&QueueSpec::dead_letter(&dead_letter))
        .await?;
    queue
        .ensure_queue(&QueueSpec::with_dead_letter(
            PRUNE_QUEUE,
            &dead_letter,
            Duration::from_secs(60),
        ))
        .await?;
    let context = StageContext::new(Arc::clone(&queue), Arc::clone(&table), shared_clock);
    let distribute = Distribute::new(context.clone(), RepublishRules::default_rules())
        .with_memory_cap(settings.memory_cap_bytes);
    let config = PruneConfig {
        memory_cap_bytes: settings.memory_cap_bytes,
        ..PruneConfig::default()
    };
    let prune = Prune::new(context.clone(), config.clone());
    println!(
        "storage growth: pruning {}, {} days x {} events/day, {} players, {} districts (season {} days), memory cap {} B",
        if settings.pruning { "on" } else { "off" },
        settings.days,
        settings.events_per_day,
        settings.players,
        settings.districts,
        settings.season_days,
        settings.memory_cap_bytes
    );
    println!("day,events,disk_bytes,feed_pages,observations,canon_rows,prune_requests");
    let mut event_number: u64 = 0;
    let mut prune_requests = 0;
    let batches_per_day = settings.events_per_day / 10;
    let step_ms = DAY_MS / batches_per_day.max(1);
    let mut scenes_seen: BTreeMap<String, ()> = BTreeMap::new();
    let started = std::time::Instant::now();
    for day in 0..settings.days {
        let active = active_districts(&settings, day);
        for batch in 0..batches_per_day {
            let district = active[(batch as usize) % active.len()];
            let scene = format!("gm-1/district-{district:02}/scene-{:02}", batch % 8);
            scenes_seen.insert(scene.clone(), ());
            let partition = PartitionUid::parse(&scene)?;
            let cast: Vec<String> = (0..3)
                .map(|offset| player((batch * 7 + day * 13 + offset * 31) % settings.players))
                .collect();
            let mut records = Vec::new();
            for position in 0..10 {
                event_number += 1;
                let event_id = format!("ev-{event_number:012}");
                let now_ms = clock.now_ms();
                let entry = CanonEntry {
                    event_id: event_id.clone(),
                    partition: partition.clone(),
                    kind: EventKind::Dialogue,
                    actor: cast[position % 3].clone(),
                    audience: cast.clone(),
                    faction: None,
                    intent: Intent::Social,
                    salience: 40,
                    tier: Tier::Template,
                    text: format!(
                        "{} tells the others about the storm over district {district} (event {event_number})",
                        cast[position % 3]
                    ),
                    composer: "template".into(),
                    accepted_at_ms: now_ms,
                    composed_at_ms: now_ms,
                };
                table
                    .put(CANON_TABLE, canon::to_item(&entry)?, None)
                    .await?;
                records.push(ReceivedMessage {
                    message_id: event_id.clone(),
                    receipt_handle: event_id,
                    body: serde_json::to_string(&DistributeRequest { canon: entry })?,
                    group_id: Some(scene.clone()),
                    receive_count: 1,
                    sent_at_ms: now_ms,
                });
            }
            let report = distribute
                .handle_batch(&records, Duration::from_secs(30))
                .await;
            anyhow::ensure!(
                report.failed_message_ids.is_empty(),
                "distribute failed a batch"
            );
            clock.advance(step_ms);
        }
        // Readers: four players in five read and commit daily; the rest never read.
        for index in 0..settings.players {
            if index % 5 == 4 {
                continue;
            }
            let feed = FeedId::Player(player(index));
            let after =
                worldfleet_tables::feed::checkpoint(table.as_ref(), FEEDS_TABLE, &feed, "app")
                    .await?;
            let read = match read_feed(table.as_ref(), FEEDS_TABLE, &feed, after, 10_000, u64::MAX)
                .await
            {
                Ok(read) => read,
                Err(worldfleet_tables::Error::BehindRetention {
                    trimmed_through, ..
                }) => worldfleet_tables::FeedRead {
                    entries: Vec::new(),
                    next_after_seq: trimmed_through,
                },
                Err(error) => return Err(error.into()),
            };
            if read.next_after_seq > after {
                commit_checkpoint(
                    table.as_ref(),
                    FEEDS_TABLE,
                    &feed,
                    "app",
                    read.next_after_seq,
                    clock.now_ms(),
                )
                .await?;
            }
        }
        if settings.pruning {
            prune_requests += drain_prune(queue.as_ref(), Some(&prune)).await?;
            worldfleet_prune::sweep::sweep(&context, &config).await?;
            prune_requests += drain_prune(queue.as_ref(), Some(&prune)).await?;
        } else {
            drain_prune(queue.as_ref(), None).await?;
        }
        store.sweep_expired().await?;
        if (day + 1) % settings.sample_every == 0 || day + 1 == settings.days {
            let mut census = Census {
                pages: 0,
                observations: 0,
                canon: 0,
            };
            for index in 0..settings.players {
                let feed = FeedId::Player(player(index)).to_string();
                census.pages += count(
                    table.as_ref(),
                    FEEDS_TABLE,
                    &feed,
                    SortKeyRange::Prefix("page#".into()),
                )
                .await;
                census.observations += count(
                    table.as_ref(),
                    MEMORY_TABLE,
                    &memory::memory_pk(&player(index)),
                    SortKeyRange::Prefix(OBSERVATION_PREFIX.into()),
                )
                .await;
            }
            for scene in scenes_seen.keys() {
                census.canon += count(table.as_ref(), CANON_TABLE, scene, SortKeyRange::All).await;
            }
            let _ = PRUNE_TABLE;
            println!(
                "{},{},{},{},{},{},{}",
                day + 1,
                event_number,
                store.disk_bytes()?,
                census.pages,
                census.observations,
                census.canon,
                prune_requests
            );
        }
    }
    eprintln!(
        "simulated {} days in {:.1} s of wall time",
        settings.days,
        started.elapsed().as_secs_f64()
    );
    drop(context);
    drop(table);
    drop(queue);
    store.close();
    Ok(())
}
