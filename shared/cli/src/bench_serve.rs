//! `worldfleet bench serve`: the doors under load, as real clients use them.
//!
//! One process runs `worldfleet serve`'s embedded server (every stage, the doors, push
//! delivery) on a fresh store and loopback port, and plays the clients against it:
//!
//! - `--subscribers` players (default 5,000), each following their own feed, spread over
//!   `--sockets` WebSockets on `GET /v1/subscribe`;
//! - a gateway posting signed dialogue events at `--rate` per second over `POST /v1/events`
//!   (`--batch` per request, `--connections` keep-alive connections), each event heard by its
//!   actor and `fan_out - 1` other players, so `fan_out` player feeds carry it.
//!
//! Latency runs from the POST's response to the frame reaching each recipient's socket (from
//! the POST's send, for the rare frame that beats its response). `--direct` posts by sending to
//! the intake queue in process instead, the baseline that prices the HTTP ingress. Clients and
//! server share the process and its cores, so the figures bound the server from above, and the
//! memory per subscriber counts both ends of each subscription.

use std::process::ExitCode;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use hdrhistogram::Histogram;
use rand::rngs::StdRng;
use rand::seq::index::sample;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use tokio::sync::mpsc;
use worldfleet_domain::envelope::DialoguePayload;
use worldfleet_domain::names::INTAKE_QUEUE;
use worldfleet_domain::{Envelope, EventKind, EventPayload, PartitionUid};
use worldfleet_embedded::{Durability, StoreOptions};
use worldfleet_intake::{GatewayKeys, IntakeConfig};
use worldfleet_kit::Env;
use worldfleet_runtime::ModelChoice;
use worldfleet_runtime::doors::DeliveryClock;
use worldfleet_serve::ServeConfig;
use worldfleet_serve::client::{Poster, follow};
use worldfleet_stages::StageSettings;

use crate::serve::{EmbeddedServer, ServerSetup};

const GATEWAY: &str = "gw-bench";
/// Scenes the events are spread over (each a FIFO group).
const SCENES: usize = 256;

/// `worldfleet bench serve` flags.
#[derive(Debug, Args)]
pub struct BenchServeArgs {
    /// Live feed subscriptions, one player's feed each.
    #[arg(long, default_value_t = 5_000)]
    subscribers: usize,
    /// WebSocket connections the subscriptions are spread over.
    #[arg(long, default_value_t = 50)]
    sockets: usize,
    /// Events offered per second.
    #[arg(long, default_value_t = 1_000.0)]
    rate: f64,
    /// Seconds of posting.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Player feeds each event reaches (the actor and fan_out - 1 others).
    #[arg(long, default_value_t = 8)]
    fan_out: usize,
    /// Envelopes per POST.
    #[arg(long, default_value_t = 10)]
    batch: usize,
    /// Keep-alive HTTP connections posting.
    #[arg(long, default_value_t = 8)]
    connections: usize,
    /// Pollers per stage.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Post by sending to the intake queue in process instead of over HTTP (the baseline).
    #[arg(long)]
    direct: bool,
    /// Acknowledge store writes once handed to the OS instead of after fsync.
    #[arg(long)]
    buffered: bool,
    /// Print the figures as one JSON line.
    #[arg(long)]
    json: bool,
}

/// What one run measured.
#[derive(Debug, Serialize)]
struct Figures {
    ingress: &'static str,
    durability: &'static str,
    subscribers: usize,
    sockets: usize,
    fan_out: usize,
    offered_per_sec: f64,
    posted: u64,
    posted_per_sec: f64,
    post_p99_ms: f64,
    frames_expected: u64,
    frames_delivered: u64,
    delivered_events_per_sec: f64,
    latency_p50_ms: f64,
    latency_p99_ms: f64,
    latency_max_ms: f64,
    kib_per_subscriber: f64,
    peak_rss_mb: f64,
}

/// Runs the benchmark and prints its figures.
pub async fn run(args: BenchServeArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        args.subscribers >= args.fan_out,
        "--subscribers must be at least --fan-out"
    );
    anyhow::ensure!(args.fan_out >= 1, "--fan-out must be at least 1");
    anyhow::ensure!(args.rate > 0.0, "--rate must be above 0");
    anyhow::ensure!(
        (1..=100).contains(&args.batch),
        "--batch must be 1 to 100 (envelopes per POST)"
    );
    let sockets = args.sockets.clamp(1, args.subscribers);
    let key: Vec<u8> = (0..32).map(|_| rand::random::<u8>()).collect();
    let mut gateways = GatewayKeys::default();
    gateways.insert(GATEWAY, key.clone());
    let mut settings = StageSettings::from_vars(&Env::process())?;
    settings.intake = Ok(IntakeConfig::new(gateways.clone()));
    let config = ServeConfig {
        max_subscribers: args.subscribers + 16,
        ..ServeConfig::default()
    };
    let data = tempfile::Builder::new()
        .prefix("worldfleet-bench-serve-")
        .tempdir()
        .context("create a temporary store")?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let options = StoreOptions {
        durability: if args.buffered {
            Durability::Buffered
        } else {
            Durability::Sync
        },
        ..StoreOptions::default()
    };
    let server = EmbeddedServer::start(
        listener,
        ServerSetup {
            data_dir: data.path().to_path_buf(),
            options,
            settings,
            gateways,
            config,
            models: ModelChoice::RulesAndTemplates,
            workers: args.workers,
            world: None,
            queues: worldfleet_runtime::resources::QueueSettings::default(),
            faults: None,
        },
    )
    .await?;
    eprintln!(
        "bench serve: {} subscribers on {sockets} sockets, {} events/s for {} s, fan-out {}, {} ingress",
        args.subscribers,
        args.rate,
        args.seconds,
        args.fan_out,
        if args.direct { "in-process" } else { "HTTP" }
    );

    let rss_before = worldfleet_runtime::embedded::current_rss_kib();
    let delivery = DeliveryClock::new()?;
    let mut readers = Vec::new();
    for socket in 0..sockets {
        let feeds: Vec<usize> = (socket..args.subscribers).step_by(sockets).collect();
        let feeds = feeds
            .into_iter()
            .map(|index| format!("player:{}", player(index)))
            .collect();
        let on_entry = {
            let delivery = Arc::clone(&delivery);
            move |event_id: &str, arrived: Instant| delivery.arrived(event_id, arrived)
        };
        let following = follow(address, GATEWAY, &key, feeds, on_entry)
            .await
            .map_err(|error| anyhow::anyhow!("open a WebSocket on /v1/subscribe: {error}"))?;
        readers.push(following.reader);
        following
            .ready
            .await
            .context("a socket closed while subscribing")?;
    }
    let kib_per_subscriber = worldfleet_runtime::embedded::current_rss_kib()
        .saturating_sub(rss_before) as f64
        / args.subscribers as f64;
    eprintln!(
        "bench serve: {} subscriptions live ({kib_per_subscriber:.1} KiB each, both ends)",
        server.state.metrics().active_subscribers()
    );

    let post_times = Arc::new(Mutex::new(Histogram::<u64>::new_with_bounds(
        1,
        3_600_000_000,
        3,
    )?));
    let (batches, batches_rx) = mpsc::channel::<Vec<(String, String, String)>>(1_024);
    let batches_rx = Arc::new(tokio::sync::Mutex::new(batches_rx));
    let mut posters = Vec::new();
    for _ in 0..args.connections.max(1) {
        let batches_rx = Arc::clone(&batches_rx);
        let delivery = Arc::clone(&delivery);
        let post_times = Arc::clone(&post_times);
        let key = key.clone();
        let queue = server.queue();
        let direct = args.direct;
        posters.push(tokio::spawn(async move {
            let mut poster = Poster::new(address, GATEWAY, key);
            loop {
                let Some(batch) = batches_rx.lock().await.recv().await else {
                    return Ok::<_, anyhow::Error>(());
                };
                let sent = Instant::now();
                delivery.sent(batch.iter().map(|(event_id, _, _)| event_id.as_str()), sent);
                if direct {
                    let messages = batch
                        .iter()
                        .map(|(event_id, partition, body)| {
                            worldfleet_ports::OutgoingMessage::fifo(
                                body.clone(),
                                partition,
                                event_id,
                            )
                        })
                        .collect();
                    queue.send_batch(INTAKE_QUEUE, messages).await?;
                } else {
                    let body = format!(
                        "[{}]",
                        batch
                            .iter()
                            .map(|(_, _, body)| body.as_str())
                            .collect::<Vec<_>>()
                            .join(",")
                    );
                    let (status, answer) = poster
                        .post("/v1/events", body)
                        .await
                        .map_err(|error| anyhow::anyhow!("POST /v1/events: {error}"))?;
                    anyhow::ensure!(status == 202, "POST /v1/events answered {status}: {answer}");
                }
                let answered = Instant::now();
                post_times
                    .lock()
                    .unwrap_or_else(|poison| poison.into_inner())
                    .saturating_record(answered.duration_since(sent).as_micros() as u64);
                delivery.answered(
                    batch.iter().map(|(event_id, _, _)| event_id.as_str()),
                    answered,
                );
            }
        }));
    }

    // The gateway: batches on a fixed schedule, whatever the server's pace.
    let mut rng = StdRng::seed_from_u64(7);
    let interval = Duration::from_secs_f64(args.batch as f64 / args.rate);
    let started = Instant::now();
    let until = started + Duration::from_secs(args.seconds);
    let mut count = 0_u64;
    let mut tick = 0_u32;
    while Instant::now() < until {
        tokio::time::sleep_until((started + interval * tick).into()).await;
        tick += 1;
        let batch = (0..args.batch)
            .map(|_| envelope(&mut rng, &key, args.subscribers, args.fan_out))
            .collect::<anyhow::Result<Vec<_>>>()?;
        count += batch.len() as u64;
        batches.send(batch).await.ok();
    }
    drop(batches);
    for poster in posters {
        poster.await.context("a poster")??;
    }
    let posting = started.elapsed().as_secs_f64();
    let expected = count * args.fan_out as u64;
    let drain_until = Instant::now() + Duration::from_secs(30);
    while delivery.frames() < expected && Instant::now() < drain_until {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let delivering = delivery
        .last_frame()
        .saturating_duration_since(started)
        .as_secs_f64()
        .max(f64::EPSILON);
    let delivered_frames = delivery.frames();
    for reader in readers {
        reader.abort();
    }
    let latency = delivery.latency();
    let post_times = post_times
        .lock()
        .unwrap_or_else(|poison| poison.into_inner())
        .clone();
    let figures = Figures {
        ingress: if args.direct { "in-process" } else { "http" },
        durability: if args.buffered { "buffered" } else { "fsync" },
        subscribers: args.subscribers,
        sockets,
        fan_out: args.fan_out,
        offered_per_sec: args.rate,
        posted: count,
        posted_per_sec: count as f64 / posting,
        post_p99_ms: post_times.value_at_quantile(0.99) as f64 / 1_000.0,
        frames_expected: expected,
        frames_delivered: delivered_frames,
        delivered_events_per_sec: delivered_frames as f64 / args.fan_out as f64 / delivering,
        latency_p50_ms: latency.value_at_quantile(0.50) as f64 / 1_000.0,
        latency_p99_ms: latency.value_at_quantile(0.99) as f64 / 1_000.0,
        latency_max_ms: latency.max() as f64 / 1_000.0,
        kib_per_subscriber,
        peak_rss_mb: worldfleet_runtime::embedded::peak_rss_mb(),
    };
    server.stop().await?;
    if args.json {
        println!("{}", serde_json::to_string(&figures)?);
    } else {
        print_figures(&figures);
    }
    Ok(if delivered_frames == expected {
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "bench serve: {} of {expected} frames arrived (the rest were refused by intake, \
             closed as behind, or still in flight after the 30 s drain)",
            delivered_frames
        );
        ExitCode::from(1)
    })
}

fn print_figures(figures: &Figures) {
    println!(
        "doors: {} subscribers on {} sockets, fan-out {}, {} ingress, {}",
        figures.subscribers, figures.sockets, figures.fan_out, figures.ingress, figures.durability
    );
    println!(
        "offered {:.0} events/s; posted {} ({:.0}/s, POST p99 {:.1} ms)",
        figures.offered_per_sec, figures.posted, figures.posted_per_sec, figures.post_p99_ms
    );
    println!(
        "delivered {} of {} frames ({:.0} events/s reached every recipient, first post to last frame)",
        figures.frames_delivered, figures.frames_expected, figures.delivered_events_per_sec
    );
    println!(
        "POST response → frame at the recipient: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        figures.latency_p50_ms, figures.latency_p99_ms, figures.latency_max_ms
    );
    println!(
        "memory: {:.1} KiB per subscriber (server and client ends), peak RSS {:.0} MiB",
        figures.kib_per_subscriber, figures.peak_rss_mb
    );
}

/// One signed dialogue event: (event id, partition, body).
fn envelope(
    rng: &mut StdRng,
    key: &[u8],
    players: usize,
    fan_out: usize,
) -> anyhow::Result<(String, String, String)> {
    let audience = sample(rng, players, fan_out);
    let actor = player(audience.index(0));
    let participants = audience.iter().skip(1).map(player).collect();
    let scene = rng.random_range(0..SCENES);
    let partition = format!("gm-bench/district-{:02}/scene-{scene:03}", scene % 16);
    let event_id = uuid::Uuid::now_v7().to_string();
    let sent_at_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as u64;
    let envelope = Envelope {
        v: 1,
        gateway: GATEWAY.to_owned(),
        event_id: event_id.clone(),
        sent_at_ms,
        partition: PartitionUid::parse(&partition)?,
        kind: EventKind::Dialogue,
        actor,
        participants,
        faction: None,
        payload: EventPayload::Dialogue(DialoguePayload {
            text: "the caravan is late again".to_owned(),
            to: None,
        }),
    };
    Ok((event_id, partition, envelope.sign(key)?))
}

fn player(index: usize) -> String {
    format!("p-{index:05}")
}
