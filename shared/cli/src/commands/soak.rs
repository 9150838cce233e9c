//! `worldfleet soak`: hours of steady traffic, to show that nothing creeps.
//!
//! A `worldfleet serve` child process (every stage embedded, fsync, pruning on with a short
//! retention so that retention is reached within the run) takes the seeded world's envelopes
//! through its HTTP door at a fixed rate. Every `--sample-secs` the driver reads the child's
//! resident memory (`/proc/PID/status`) and what of it the program holds on the heap and in the
//! store's memtables and cache (`/metrics`), its store's size on disk and table count, its
//! queue depths and its intake → feed latency histogram (`/metrics`; the window's p50 and p99
//! are interpolated inside the histogram's buckets, as Prometheus' `histogram_quantile` does),
//! and writes a CSV row. At the end it writes `soak.csv` and `soak.svg` (four panels: memory
//! with the heap's share, store, p99, queue depth)
//! and judges the run after its warm-up: memory and p99 flat (their least-squares slope over the
//! measured span changes them by at most 10 % of their mean, or 25 MiB / 50 ms when that is
//! larger) and the queues not growing (their slope adds at most 10 % of their mean, or 1,000
//! messages, over the span).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use serde::Serialize;
use worldfleet_ports::{Clock, SystemClock};
use worldfleet_runtime::doors::DoorGateway;
use worldfleet_runtime::fleet::WorldGateway;
use worldfleet_serve::metrics::LATENCY_BUCKETS_MS;
use worldfleet_testbed::world::Emitted;
use worldfleet_testbed::{World, WorldSpec};

use crate::serve_child::{ChildSpec, ServeChild, metric_sum};

#[derive(Debug, Args)]
pub(super) struct SoakArgs {
    /// How long to post.
    #[arg(long, default_value_t = 60.0)]
    minutes: f64,
    /// Envelopes per second (the README's measured maximum through the door is ~1,400/s on a
    /// 2-core machine; half of it is the default).
    #[arg(long, default_value_t = 700.0)]
    rate: f64,
    /// Seconds between samples.
    #[arg(long, default_value_t = 10)]
    sample_secs: u64,
    /// The part of the run left out of the verdict while caches and the store warm up.
    #[arg(long, default_value_t = 10.0)]
    warm_up_minutes: f64,
    /// Feed retention (`WORLDFLEET_FEED_RETENTION_DAYS`; the hard retention is twice it).
    #[arg(long, default_value = "5m")]
    retention: String,
    /// A player's memory cap (`WORLDFLEET_MEMORY_CAP_BYTES`).
    #[arg(long, default_value_t = 262_144)]
    memory_cap_bytes: u64,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    #[arg(long, default_value_t = 2_000)]
    players: u32,
    /// Audience of every event (the actor and fan-out − 1 participants).
    #[arg(long, default_value_t = 8)]
    fan_out: u32,
    /// Pollers per stage in the server.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Where the CSV, the plot, the server's log and its store go (default: a temporary
    /// directory for the store, the CSV and plot in the current directory).
    #[arg(long)]
    out: Option<PathBuf>,
}

/// One sample.
#[derive(Debug, Clone, Default, Serialize)]
struct Sample {
    minute: f64,
    posted: u64,
    rss_mib: f64,
    /// What the server's program holds on the heap (`worldfleet_heap_bytes`); the rest of
    /// its resident memory is the allocator's and the binary's.
    heap_mib: f64,
    /// The store's memtables and block cache, and its tables on disk.
    memtables_mib: f64,
    cache_mib: f64,
    tables: u64,
    store_mib: f64,
    p50_ms: f64,
    p99_ms: f64,
    published: u64,
    queued: u64,
}

pub(super) async fn run(args: SoakArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(args.rate > 0.0, "--rate must be positive");
    let out = args.out.clone().unwrap_or_else(|| PathBuf::from("."));
    std::fs::create_dir_all(&out).with_context(|| format!("create {}", out.display()))?;
    let temporary = tempfile::Builder::new()
        .prefix("worldfleet-soak-")
        .tempdir()
        .context("create a temporary directory")?;
    let root = if args.out.is_some() {
        out.clone()
    } else {
        temporary.path().to_path_buf()
    };
    let events = (args.rate * args.minutes * 60.0).ceil() as u64;
    let spec = WorldSpec {
        events,
        players: args.players,
        fan_out: args.fan_out,
        seed: args.seed,
        world_every: 0,
        ..WorldSpec::small(args.seed)
    };
    let hard_retention = double(&args.retention)?;
    let mut server = ServeChild::new(ChildSpec {
        name: "soak",
        root,
        key_line: format!("{}={}", spec.gateway, hex::encode(&spec.gateway_key)),
        flags: vec!["--workers".into(), args.workers.to_string()],
        env: vec![
            (
                "WORLDFLEET_FEED_RETENTION_DAYS".into(),
                args.retention.clone(),
            ),
            ("WORLDFLEET_FEED_HARD_RETENTION_DAYS".into(), hard_retention),
            (
                "WORLDFLEET_MEMORY_CAP_BYTES".into(),
                args.memory_cap_bytes.to_string(),
            ),
            ("WORLDFLEET_LEDGER_COMPACTION".into(), "on".into()),
        ],
    })?;
    eprintln!(
        "worldfleet soak: {} min at {} envelopes/s ({events} events, fan-out {}), retention {}, memory cap {} B; store in {}",
        args.minutes,
        args.rate,
        args.fan_out,
        args.retention,
        args.memory_cap_bytes,
        server.dir.display()
    );
    server.spawn()?;
    server
        .wait_until_serving(Instant::now() + Duration::from_secs(120))
        .await?;
    let door = DoorGateway::new(server.address, &spec.gateway, &spec.gateway_key)?;
    let mut world = World::new(spec);
    let started = Instant::now();
    let mut samples: Vec<Sample> = Vec::new();
    let mut last_buckets = vec![0u64; LATENCY_BUCKETS_MS.len() + 1];
    let mut next_sample = Duration::from_secs(args.sample_secs);
    let mut posted: u64 = 0;
    while !world.finished() {
        let now_ms = SystemClock.now_ms();
        let batch: Vec<Emitted> = std::iter::from_fn(|| world.next(now_ms))
            .take(door.batch_size())
            .collect();
        while !door.post(&batch).await? {
            server.check_alive()?;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        posted += batch.len() as u64;
        let due = Duration::from_secs_f64(posted as f64 / args.rate);
        if let Some(wait) = due.checked_sub(started.elapsed()) {
            tokio::time::sleep(wait).await;
        }
        if started.elapsed() >= next_sample {
            next_sample += Duration::from_secs(args.sample_secs);
            if let Some(sample) =
                take_sample(&mut server, started, posted, &mut last_buckets).await?
            {
                eprintln!(
                    "  {:5.1} min: {} posted, RSS {:.0} MiB (heap {:.0}), store {:.0} MiB in {} tables, p99 {:.0} ms, {} queued",
                    sample.minute,
                    sample.posted,
                    sample.rss_mib,
                    sample.heap_mib,
                    sample.store_mib,
                    sample.tables,
                    sample.p99_ms,
                    sample.queued
                );
                samples.push(sample);
            }
        }
    }
    server
        .wait_for_drain(Instant::now() + Duration::from_secs(600), false)
        .await?;
    server.stop().await?;

    let warm_up = args.warm_up_minutes.min(args.minutes / 2.0);
    let verdict = Verdict::of(&samples, warm_up);
    let csv = out.join("soak.csv");
    let svg = out.join("soak.svg");
    write_csv(&csv, &samples)?;
    std::fs::write(&svg, plot(&samples, &args, warm_up))
        .with_context(|| format!("write {}", svg.display()))?;
    println!(
        "samples:       {} ({}), plot {}",
        samples.len(),
        csv.display(),
        svg.display()
    );
    println!(
        "after {:.1} min of warm-up: memory {:.0} -> {:.0} MiB (slope {:+.1} MiB/h), p99 mean {:.0} ms (slope {:+.1} ms/h), store {:.0} -> {:.0} MiB ({:+.1} MiB/h), queued at most {} (slope {:+.0}/h)",
        warm_up,
        verdict.rss_first,
        verdict.rss_last,
        verdict.rss_slope_per_hour,
        verdict.p99_mean,
        verdict.p99_slope_per_hour,
        verdict.store_first,
        verdict.store_last,
        verdict.store_slope_per_hour,
        verdict.max_queued,
        verdict.queued_slope_per_hour
    );
    println!(
        "verdict:       {} — memory {}, p99 {}, queues {}",
        if verdict.passed() { "PASS" } else { "FAIL" },
        if verdict.memory_flat {
            "flat"
        } else {
            "not flat"
        },
        if verdict.p99_flat { "flat" } else { "not flat" },
        if verdict.queues_flat {
            "not growing"
        } else {
            "growing"
        },
    );
    drop(temporary);
    Ok(if verdict.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Twice a retention given as `worldfleet_kit::Env::days` reads it (`7`, `90s`, `5m`, `6h`).
fn double(retention: &str) -> anyhow::Result<String> {
    let split = retention
        .find(|character: char| !character.is_ascii_digit())
        .unwrap_or(retention.len());
    let (number, unit) = retention.split_at(split);
    let number: u64 = number
        .parse()
        .with_context(|| format!("--retention {retention:?}: a whole number and a unit"))?;
    Ok(format!("{}{unit}", number * 2))
}

async fn take_sample(
    server: &mut ServeChild,
    started: Instant,
    posted: u64,
    last_buckets: &mut [u64],
) -> anyhow::Result<Option<Sample>> {
    server.check_alive()?;
    let Some(text) = server.metrics().await else {
        return Ok(None);
    };
    // Cumulative counts at each bound, then +Inf.
    let buckets: Vec<u64> = LATENCY_BUCKETS_MS
        .iter()
        .map(|bound| {
            let seconds = *bound as f64 / 1000.0;
            metric_sum(
                &text,
                &format!("worldfleet_intake_to_feed_seconds_bucket{{le=\"{seconds}\"}}"),
            )
        })
        .chain(std::iter::once(metric_sum(
            &text,
            "worldfleet_intake_to_feed_seconds_bucket{le=\"+Inf\"}",
        )))
        .collect();
    let window: Vec<u64> = buckets
        .iter()
        .zip(last_buckets.iter())
        .map(|(now, before)| now.saturating_sub(*before))
        .collect();
    last_buckets.copy_from_slice(&buckets);
    let rss_kib = server
        .pid()
        .and_then(|pid| std::fs::read_to_string(format!("/proc/{pid}/status")).ok())
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with("VmRSS:"))?
                .split_whitespace()
                .nth(1)?
                .parse::<u64>()
                .ok()
        })
        .unwrap_or(0);
    Ok(Some(Sample {
        minute: started.elapsed().as_secs_f64() / 60.0,
        posted,
        rss_mib: rss_kib as f64 / 1024.0,
        heap_mib: metric_sum(&text, "worldfleet_heap_bytes ") as f64 / 1_048_576.0,
        memtables_mib: metric_sum(&text, "worldfleet_store_memory_bytes{part=\"memtables\"}")
            as f64
            / 1_048_576.0,
        cache_mib: metric_sum(&text, "worldfleet_store_memory_bytes{part=\"block_cache\"}") as f64
            / 1_048_576.0,
        tables: metric_sum(&text, "worldfleet_store_held{kind=\"tables\"}"),
        store_mib: metric_sum(&text, "worldfleet_store_bytes ") as f64 / 1_048_576.0,
        p50_ms: quantile(&window, 0.50),
        p99_ms: quantile(&window, 0.99),
        published: window.last().copied().unwrap_or(0),
        queued: metric_sum(&text, "worldfleet_queue_depth{"),
    }))
}

/// The `q` quantile of a window of cumulative bucket counts (`LATENCY_BUCKETS_MS`, then +Inf),
/// interpolated linearly inside its bucket; 0 for an empty window, the last bound when it
/// falls in +Inf.
fn quantile(cumulative: &[u64], q: f64) -> f64 {
    let Some(&total) = cumulative.last() else {
        return 0.0;
    };
    if total == 0 {
        return 0.0;
    }
    let rank = q * total as f64;
    let mut lower_bound = 0.0;
    let mut lower_count = 0u64;
    for (index, &count) in cumulative.iter().enumerate() {
        let Some(&upper) = LATENCY_BUCKETS_MS.get(index) else {
            return lower_bound;
        };
        let upper = upper as f64;
        if count as f64 >= rank {
            let inside = (count - lower_count).max(1) as f64;
            return lower_bound + (upper - lower_bound) * (rank - lower_count as f64) / inside;
        }
        lower_bound = upper;
        lower_count = count;
    }
    lower_bound
}

/// The judgement after warm-up.
#[derive(Debug, Default)]
struct Verdict {
    rss_first: f64,
    rss_last: f64,
    rss_slope_per_hour: f64,
    p99_mean: f64,
    p99_slope_per_hour: f64,
    store_first: f64,
    store_last: f64,
    store_slope_per_hour: f64,
    max_queued: u64,
    queued_slope_per_hour: f64,
    memory_flat: bool,
    p99_flat: bool,
    queues_flat: bool,
}

impl Verdict {
    fn passed(&self) -> bool {
        self.memory_flat && self.p99_flat && self.queues_flat
    }

    fn of(samples: &[Sample], warm_up_minutes: f64) -> Self {
        let measured: Vec<&Sample> = samples
            .iter()
            .filter(|sample| sample.minute >= warm_up_minutes)
            .collect();
        let (Some(first), Some(last)) = (measured.first(), measured.last()) else {
            return Self::default();
        };
        let span_hours = (last.minute - first.minute) / 60.0;
        let series = |value: fn(&Sample) -> f64| -> Vec<(f64, f64)> {
            measured
                .iter()
                .map(|sample| (sample.minute / 60.0, value(sample)))
                .collect()
        };
        let rss = series(|sample| sample.rss_mib);
        let p99 = series(|sample| sample.p99_ms);
        let store = series(|sample| sample.store_mib);
        let queued = series(|sample| sample.queued as f64);
        let queued_slope = slope(&queued);
        let rss_slope = slope(&rss);
        let p99_slope = slope(&p99);
        let rss_mean = mean(&rss);
        let p99_mean = mean(&p99);
        Self {
            rss_first: first.rss_mib,
            rss_last: last.rss_mib,
            rss_slope_per_hour: rss_slope,
            p99_mean,
            p99_slope_per_hour: p99_slope,
            store_first: first.store_mib,
            store_last: last.store_mib,
            store_slope_per_hour: slope(&store),
            max_queued: measured
                .iter()
                .map(|sample| sample.queued)
                .max()
                .unwrap_or(0),
            queued_slope_per_hour: queued_slope,
            memory_flat: (rss_slope * span_hours).abs() <= (0.10 * rss_mean).max(25.0),
            p99_flat: (p99_slope * span_hours).abs() <= (0.10 * p99_mean).max(50.0),
            queues_flat: queued_slope * span_hours <= (0.10 * mean(&queued)).max(1_000.0),
        }
    }
}

fn mean(points: &[(f64, f64)]) -> f64 {
    points.iter().map(|(_, y)| y).sum::<f64>() / points.len().max(1) as f64
}

/// The least-squares slope of `points` (0 for fewer than two distinct x).
fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    let mean_x = points.iter().map(|(x, _)| x).sum::<f64>() / n.max(1.0);
    let mean_y = mean(points);
    let (mut covariance, mut variance) = (0.0, 0.0);
    for (x, y) in points {
        covariance += (x - mean_x) * (y - mean_y);
        variance += (x - mean_x) * (x - mean_x);
    }
    if variance == 0.0 {
        0.0
    } else {
        covariance / variance
    }
}

fn write_csv(path: &Path, samples: &[Sample]) -> anyhow::Result<()> {
    let mut text = String::from(
        "minute,posted,rss_mib,heap_mib,memtables_mib,cache_mib,tables,store_mib,p50_ms,p99_ms,published,queued\n",
    );
    for sample in samples {
        let _ = writeln!(
            text,
            "{:.3},{},{:.1},{:.1},{:.1},{:.1},{},{:.1},{:.1},{:.1},{},{}",
            sample.minute,
            sample.posted,
            sample.rss_mib,
            sample.heap_mib,
            sample.memtables_mib,
            sample.cache_mib,
            sample.tables,
            sample.store_mib,
            sample.p50_ms,
            sample.p99_ms,
            sample.published,
            sample.queued
        );
    }
    std::fs::write(path, text).with_context(|| format!("write {}", path.display()))
}

/// One figure of a sample.
type Reading = fn(&Sample) -> f64;

/// Four stacked panels over the run's minutes, the warm-up shaded.
fn plot(samples: &[Sample], args: &SoakArgs, warm_up: f64) -> String {
    const WIDTH: f64 = 900.0;
    const PANEL: f64 = 170.0;
    const LEFT: f64 = 70.0;
    const RIGHT: f64 = 20.0;
    const TOP: f64 = 50.0;
    // Each panel: its title, its line, and a second line drawn in orange where it has one.
    let panels: [(&str, Reading, Option<Reading>); 4] = [
        (
            "resident memory, MiB (orange: held on the heap)",
            |sample| sample.rss_mib,
            Some(|sample| sample.heap_mib),
        ),
        ("store on disk, MiB", |sample| sample.store_mib, None),
        (
            "intake → feed p99, ms (10 s windows)",
            |sample| sample.p99_ms,
            None,
        ),
        (
            "messages queued, all stages",
            |sample| sample.queued as f64,
            None,
        ),
    ];
    let height = TOP + PANEL * panels.len() as f64 + 30.0;
    let max_minute = samples.last().map_or(1.0, |sample| sample.minute).max(1.0);
    let x = |minute: f64| LEFT + (WIDTH - LEFT - RIGHT) * minute / max_minute;
    let mut svg = String::new();
    let _ = write!(
        svg,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"12\">\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\
         <text x=\"{LEFT}\" y=\"22\" font-size=\"15\">worldfleet soak: {} min at {} envelopes/s, fan-out {}, retention {}, memory cap {} B</text>\
         <text x=\"{LEFT}\" y=\"40\" fill=\"#666\">minutes on the x axis; the shaded first {warm_up:.0} min are warm-up, left out of the verdict</text>",
        args.minutes, args.rate, args.fan_out, args.retention, args.memory_cap_bytes
    );
    for (index, (title, value, second)) in panels.iter().enumerate() {
        let top = TOP + PANEL * index as f64 + 10.0;
        let bottom = top + PANEL - 40.0;
        let max = samples.iter().map(value).fold(0.0_f64, f64::max).max(1.0) * 1.1;
        let y = |v: f64| bottom - (bottom - top) * v / max;
        let _ = write!(
            svg,
            "<rect x=\"{LEFT}\" y=\"{top}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"#f2f2f2\"/>\
             <line x1=\"{LEFT}\" y1=\"{bottom}\" x2=\"{:.1}\" y2=\"{bottom}\" stroke=\"#999\"/>\
             <line x1=\"{LEFT}\" y1=\"{top}\" x2=\"{LEFT}\" y2=\"{bottom}\" stroke=\"#999\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\">{title}</text>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{max:.0}</text>\
             <text x=\"{:.1}\" y=\"{bottom}\" text-anchor=\"end\">0</text>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{max_minute:.0} min</text>",
            x(warm_up) - LEFT,
            bottom - top,
            WIDTH - RIGHT,
            LEFT + 8.0,
            top + 14.0,
            LEFT - 6.0,
            top + 10.0,
            LEFT - 6.0,
            WIDTH - RIGHT,
            bottom + 14.0
        );
        for (line, colour) in
            std::iter::once((value, "#1f5fa8")).chain(second.iter().map(|line| (line, "#d9822b")))
        {
            let points: Vec<String> = samples
                .iter()
                .map(|sample| format!("{:.1},{:.1}", x(sample.minute), y(line(sample))))
                .collect();
            let _ = write!(
                svg,
                "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"1.5\" points=\"{}\"/>",
                points.join(" ")
            );
        }
    }
    svg.push_str("</svg>\n");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_inside_their_bucket() {
        // 100 observations: 50 at or under 5 ms, 49 more under 10 ms, 1 under 25 ms.
        let mut cumulative = vec![0u64; LATENCY_BUCKETS_MS.len() + 1];
        for (index, count) in cumulative.iter_mut().enumerate() {
            *count = match index {
                0 => 50,
                1 => 99,
                _ => 100,
            };
        }
        assert!((quantile(&cumulative, 0.50) - 5.0).abs() < 1e-9);
        assert!((quantile(&cumulative, 0.99) - 10.0).abs() < 1e-9);
        assert!(quantile(&cumulative, 0.995) > 10.0 && quantile(&cumulative, 0.995) <= 25.0);
        assert_eq!(quantile(&vec![0; LATENCY_BUCKETS_MS.len() + 1], 0.99), 0.0);
    }

    #[test]
    fn a_slope_is_per_unit_of_x_and_flatness_allows_noise_but_not_growth() {
        assert!((slope(&[(0.0, 1.0), (1.0, 3.0), (2.0, 5.0)]) - 2.0).abs() < 1e-9);
        let sample = |minute: f64, rss_mib: f64| Sample {
            minute,
            posted: 0,
            rss_mib,
            p50_ms: 1.0,
            p99_ms: 20.0,
            ..Sample::default()
        };
        let flat: Vec<Sample> = (0..60)
            .map(|minute| sample(f64::from(minute), 300.0 + f64::from(minute % 3)))
            .collect();
        assert!(Verdict::of(&flat, 10.0).memory_flat);
        let growing: Vec<Sample> = (0..60)
            .map(|minute| sample(f64::from(minute), 300.0 + 2.0 * f64::from(minute)))
            .collect();
        let verdict = Verdict::of(&growing, 10.0);
        assert!(!verdict.memory_flat, "{verdict:?}");
        assert!((verdict.rss_slope_per_hour - 120.0).abs() < 1e-6);
    }

    #[test]
    fn a_backlog_that_grows_fails_the_run_and_one_that_comes_and_goes_does_not() {
        let sample = |minute: u32, queued: u64| Sample {
            minute: f64::from(minute),
            posted: 0,
            rss_mib: 300.0,
            p50_ms: 1.0,
            p99_ms: 20.0,
            queued,
            ..Sample::default()
        };
        let bursts: Vec<Sample> = (0..60)
            .map(|minute| sample(minute, if minute % 4 == 0 { 2_500 } else { 40 }))
            .collect();
        let verdict = Verdict::of(&bursts, 10.0);
        assert!(verdict.queues_flat && verdict.passed(), "{verdict:?}");
        let behind: Vec<Sample> = (0..60)
            .map(|minute| sample(minute, u64::from(minute.saturating_sub(12)) * 3_000))
            .collect();
        let verdict = Verdict::of(&behind, 10.0);
        assert!(!verdict.queues_flat && !verdict.passed(), "{verdict:?}");
    }

    #[test]
    fn retention_doubles_with_its_unit() {
        assert_eq!(double("5m").unwrap(), "10m");
        assert_eq!(double("7").unwrap(), "14");
        assert!(double("soon").is_err());
    }
}
