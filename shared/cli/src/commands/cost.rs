//! `worldfleet cost`: a measured `bench --aws` run turned into a month of a world of a given
//! size — the run's bill per million events scaled to the world's events, plus the capacity the
//! template runs whatever the traffic — with every assumption printed beside the figures.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use worldfleet_aws::cost::{Bill, Capacity, Month, PriceList};
use worldfleet_aws::template::Template;

use crate::bench_aws::{AwsBenchReport, print_bill, print_lines};

/// How a bill is priced: which prices, and how long stored items are kept.
#[derive(Debug, Args)]
pub(crate) struct BillArgs {
    /// A price file like `infra/prices.json` (the default, built in).
    #[arg(long, value_name = "FILE")]
    prices: Option<PathBuf>,
    /// How long stored items are kept, days (the bill's storage line; feeds keep 7 days by
    /// default).
    #[arg(long, default_value_t = 7.0)]
    pub(crate) retention_days: f64,
}

impl BillArgs {
    pub(crate) fn load(&self) -> anyhow::Result<PriceList> {
        Ok(match &self.prices {
            Some(path) => PriceList::from_path(path)?,
            None => PriceList::published(),
        })
    }
}

#[derive(Debug, Args)]
pub(super) struct CostArgs {
    /// A report written by `worldfleet bench --aws --report FILE`.
    #[arg(
        long,
        default_value = "infra/measured/bench-aws.json",
        value_name = "FILE"
    )]
    report: PathBuf,
    /// Concurrent players.
    #[arg(long, default_value_t = 20_000)]
    ccu: u64,
    /// Events each player sends a minute, on average.
    #[arg(long, default_value_t = 2.0)]
    events_per_player_minute: f64,
    #[command(flatten)]
    bill: BillArgs,
    /// The template whose capacity settings (inference pool, feed service) are billed.
    #[arg(long, default_value = "infra/template.yaml")]
    template: String,
    /// Share of events the narrative stages send to the inference pool (0 = rules and templates
    /// only, 1 = every event embedded by classify).
    #[arg(long, default_value_t = 1.0)]
    model_share: f64,
    /// Embeddings per second one pool instance serves. The default is the pool's measured
    /// figure on two CPU threads at batch 32 (README, inference pool); the GPU instance has not
    /// been measured.
    #[arg(long, default_value_t = 216.0)]
    pool_embeddings_per_second: f64,
    /// Leave out the feed service (`serve --aws` on Fargate behind a load balancer).
    #[arg(long)]
    no_feed_service: bool,
    /// Pollers an event source mapping keeps long-polling an idle queue.
    #[arg(long, default_value_t = 5)]
    idle_pollers_per_queue: u64,
    /// Print the month as one JSON line too.
    #[arg(long)]
    json: bool,
}

pub(super) async fn run(args: CostArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        args.events_per_player_minute >= 0.0 && args.events_per_player_minute.is_finite(),
        "--events-per-player-minute must be a number ≥ 0"
    );
    anyhow::ensure!(
        (0.0..=1.0).contains(&args.model_share),
        "--model-share must be between 0 and 1"
    );
    anyhow::ensure!(
        args.pool_embeddings_per_second > 0.0,
        "--pool-embeddings-per-second must be above 0"
    );
    let text = std::fs::read_to_string(&args.report).with_context(|| {
        format!(
            "read the measured run {} (write one with `worldfleet bench --aws --report FILE`)",
            args.report.display()
        )
    })?;
    let report: AwsBenchReport = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a `bench --aws` report", args.report.display()))?;
    let prices = args.bill.load()?;
    let template =
        Template::from_path(&args.template).with_context(|| format!("read {}", args.template))?;
    let capacity = Capacity::from_template(
        &template,
        args.model_share,
        args.pool_embeddings_per_second,
        !args.no_feed_service,
        args.idle_pollers_per_queue,
    );
    let bill = Bill::per_million_events(&report.measure, &prices, args.bill.retention_days);
    let events_per_second = args.ccu as f64 * args.events_per_player_minute / 60.0;
    let month = Month::at(&bill, events_per_second, &capacity, &prices);

    println!(
        "measured run: {} ({} events, fan-out {}, lost {}, duplicates {})",
        args.report.display(),
        report.events,
        report.fan_out,
        report.lost,
        report.duplicates
    );
    println!("assumptions:");
    println!(
        "  {} concurrent players × {} events a minute = {:.0} events/s on average, {:.1} million events in a 730-hour month",
        args.ccu,
        args.events_per_player_minute,
        events_per_second,
        month.events / 1e6
    );
    println!(
        "  every event costs what the measured run's events cost (its fan-out, its batch sizes, its handler durations at the template's memory sizes)"
    );
    println!(
        "  {:.0} % of events go to the inference pool; one {} serves {} embeddings/s; at least {} instance(s)",
        args.model_share * 100.0,
        prices.gpu_instance_type,
        args.pool_embeddings_per_second,
        capacity.inference_min_instances
    );
    println!(
        "  feed service: {}",
        if capacity.serve_tasks > 0 {
            format!(
                "{} Fargate tasks of {} vCPU / {} GB and one load balancer (its LCUs not counted)",
                capacity.serve_tasks, capacity.serve_task_vcpu, capacity.serve_task_gb
            )
        } else {
            "off".to_owned()
        }
    );
    println!(
        "  stored items kept {} days; free tiers, data transfer, CloudWatch and the model's LLM tokens not counted",
        args.bill.retention_days
    );
    println!();
    print_bill(&bill, &prices);
    println!();
    println!("a month");
    print_lines(&month.lines, "a month");
    println!(
        "total: ${:.0} a month, ${:.2} per million events (traffic ${:.0}, capacity ${:.0})",
        month.dollars,
        month.dollars_per_million_events,
        bill.dollars_per_million_events * month.events / 1e6,
        month.dollars - bill.dollars_per_million_events * month.events / 1e6
    );
    if args.json {
        println!("{}", serde_json::to_string(&month)?);
    }
    Ok(ExitCode::SUCCESS)
}
