//! The AWS bill of a measured run: prices, the bill per million events, and a month at a
//! studio's scale.
//!
//! - [`PriceList`]: every price the bill uses, from one file with its sources and date
//!   (`infra/prices.json`, built in; another file with `--prices`).
//! - [`RunMeasure`]: what a run measured, per stage — requests, units, Lambda invocations and
//!   billed milliseconds — and the bytes it left stored.
//! - [`Bill`]: the run as line items per million events (SQS, DynamoDB reads/writes and storage,
//!   Lambda requests and GB-seconds); [`Month`] adds the capacity that runs whatever the traffic
//!   (the inference pool, the feed service and its load balancer, idle event-source polling) at a
//!   number of concurrent players.
//!
//! The arithmetic is pure, so every line is tested against a hand computation.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use worldfleet_ports::UsageSnapshot;

use crate::template::{Template, as_u64};

/// The price file built into the binary.
const PUBLISHED: &str = include_str!("../../../infra/prices.json");

/// Seconds in the month the bill uses (AWS bills 730 hours a month).
const HOURS_PER_MONTH: f64 = 730.0;

/// Every price the bill uses, in dollars.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PriceList {
    pub region: String,
    /// What kind of prices (on-demand, first tier, ...).
    pub kind: String,
    /// When the prices were taken (ISO date).
    pub taken_on: String,
    /// How far the prices were checked.
    pub checked: String,
    /// Where each group of prices comes from.
    pub sources: BTreeMap<String, String>,
    /// SQS FIFO, per million requests (each 64 KB chunk of a payload is a request).
    pub sqs_fifo_per_million_requests: f64,
    pub sqs_standard_per_million_requests: f64,
    /// DynamoDB on-demand, per million write request units.
    pub dynamodb_per_million_write_units: f64,
    /// DynamoDB on-demand, per million read request units.
    pub dynamodb_per_million_read_units: f64,
    pub dynamodb_storage_per_gb_month: f64,
    pub lambda_per_million_requests: f64,
    pub lambda_arm64_per_gb_second: f64,
    pub fargate_arm64_per_vcpu_hour: f64,
    pub fargate_arm64_per_gb_hour: f64,
    pub fargate_x86_per_vcpu_hour: f64,
    pub fargate_x86_per_gb_hour: f64,
    pub alb_per_hour: f64,
    pub alb_per_lcu_hour: f64,
    pub gpu_instance_type: String,
    pub gpu_instance_per_hour: f64,
}

/// Why a price file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum PriceError {
    #[error("read the price file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("the price file {path} is not a price list: {source}")]
    Parse {
        path: String,
        source: serde_json::Error,
    },
    #[error("the price file {path} has a negative or non-finite price: {field}")]
    Invalid { path: String, field: String },
}

impl PriceList {
    /// The prices built into the binary (`infra/prices.json`).
    pub fn published() -> PriceList {
        // The file is part of the source tree and a unit test parses it, so this cannot fail in
        // a build that passed its tests.
        Self::parse(PUBLISHED, "infra/prices.json").expect("infra/prices.json is a price list")
    }

    /// Reads a price file with the same fields as `infra/prices.json`.
    pub fn from_path(path: &Path) -> Result<PriceList, PriceError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| PriceError::Read {
            path: name.clone(),
            source,
        })?;
        Self::parse(&text, &name)
    }

    fn parse(text: &str, path: &str) -> Result<PriceList, PriceError> {
        let parse_error = |source| PriceError::Parse {
            path: path.to_owned(),
            source,
        };
        let value: serde_json::Value = serde_json::from_str(text).map_err(parse_error)?;
        // Every number in the file is a price: none may be negative (or, from a hand edit,
        // out of range).
        if let Some(fields) = value.as_object() {
            for (field, price) in fields {
                if price
                    .as_f64()
                    .is_some_and(|price| !(price.is_finite() && price >= 0.0))
                {
                    return Err(PriceError::Invalid {
                        path: path.to_owned(),
                        field: field.clone(),
                    });
                }
            }
        }
        serde_json::from_value(value).map_err(parse_error)
    }

    /// One line naming the prices, for the top of a bill.
    pub fn describe(&self) -> String {
        format!(
            "{}, {}, taken {}; {}",
            self.region, self.kind, self.taken_on, self.checked
        )
    }
}

/// What one stage did in a measured run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageMeasure {
    pub stage: String,
    /// Queue requests traffic made (idle long polls and the benchmark's own checks excluded).
    pub queue_requests: u64,
    pub write_units: u64,
    pub read_units: u64,
    /// Handler invocations: one per batch, as the event source mapping invokes a Lambda.
    pub invocations: u64,
    /// Handler time as Lambda bills it: each invocation rounded up to the millisecond.
    pub billed_ms: u64,
    /// The function's memory size in the template, MB.
    pub memory_mb: u64,
}

impl StageMeasure {
    /// A stage's measure from its counters.
    pub fn from_usage(
        stage: &str,
        usage: &UsageSnapshot,
        invocations: u64,
        billed_ms: u64,
        memory_mb: u64,
    ) -> StageMeasure {
        StageMeasure {
            stage: stage.to_owned(),
            queue_requests: usage.queue_requests,
            write_units: usage.table_write_units,
            read_units: usage.table_read_units,
            invocations,
            billed_ms,
            memory_mb,
        }
    }
}

/// What a whole run measured: the events it carried, each stage, and what it left stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunMeasure {
    pub events: u64,
    pub fan_out: u32,
    pub stages: Vec<StageMeasure>,
    /// Bytes left in each table at the end of the run (item sizes as DynamoDB counts them).
    pub stored_bytes: BTreeMap<String, u64>,
}

/// One line of a bill.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BillLine {
    /// What is paid for, and by which stage.
    pub item: String,
    /// How much of it per million events (or per month, in a [`Month`]).
    pub quantity: f64,
    pub unit: String,
    /// Dollars per `unit`.
    pub unit_price: f64,
    pub dollars: f64,
}

impl BillLine {
    fn new(item: String, quantity: f64, unit: &str, unit_price: f64) -> BillLine {
        BillLine {
            item,
            quantity,
            unit: unit.to_owned(),
            unit_price,
            dollars: quantity * unit_price,
        }
    }
}

/// A run's bill per million events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bill {
    pub lines: Vec<BillLine>,
    /// How long stored bytes are kept, days (storage is billed for that long).
    pub retention_days: f64,
    pub dollars_per_million_events: f64,
}

impl Bill {
    /// Prices `run` per million events; stored bytes are billed for `retention_days`.
    pub fn per_million_events(run: &RunMeasure, prices: &PriceList, retention_days: f64) -> Bill {
        let per_million = |count: u64| count as f64 * 1_000_000.0 / run.events.max(1) as f64;
        let mut lines = Vec::new();
        for stage in &run.stages {
            let name = &stage.stage;
            // Counted things, in millions per million events: (what, count, unit, price).
            let counted = [
                (
                    "SQS FIFO requests",
                    stage.queue_requests,
                    "M requests",
                    prices.sqs_fifo_per_million_requests,
                ),
                (
                    "DynamoDB writes",
                    stage.write_units,
                    "M WRU",
                    prices.dynamodb_per_million_write_units,
                ),
                (
                    "DynamoDB reads",
                    stage.read_units,
                    "M RRU",
                    prices.dynamodb_per_million_read_units,
                ),
                (
                    "Lambda requests",
                    stage.invocations,
                    "M requests",
                    prices.lambda_per_million_requests,
                ),
            ];
            for (what, count, unit, price) in counted {
                if count > 0 {
                    let millions = per_million(count) / 1e6;
                    lines.push(BillLine::new(
                        format!("{what} ({name})"),
                        millions,
                        unit,
                        price,
                    ));
                }
            }
            if stage.invocations > 0 {
                let gb_seconds =
                    per_million(stage.billed_ms) / 1000.0 * stage.memory_mb as f64 / 1024.0;
                lines.push(BillLine::new(
                    format!("Lambda duration ({name}, {} MB arm64)", stage.memory_mb),
                    gb_seconds,
                    "GB-s",
                    prices.lambda_arm64_per_gb_second,
                ));
            }
        }
        let stored: u64 = run.stored_bytes.values().sum();
        let gb_months = per_million(stored) / 1e9 * retention_days / (HOURS_PER_MONTH / 24.0);
        lines.push(BillLine::new(
            format!(
                "DynamoDB storage ({:.0} bytes per event kept {retention_days} days)",
                stored as f64 / run.events.max(1) as f64
            ),
            gb_months,
            "GB-month",
            prices.dynamodb_storage_per_gb_month,
        ));
        let dollars_per_million_events = lines.iter().map(|line| line.dollars).sum();
        Bill {
            lines,
            retention_days,
            dollars_per_million_events,
        }
    }

    /// The sum of the lines whose item starts with `prefix` (e.g. "SQS", "Lambda").
    pub fn dollars_of(&self, prefix: &str) -> f64 {
        self.lines
            .iter()
            .filter(|line| line.item.starts_with(prefix))
            .map(|line| line.dollars)
            .sum()
    }
}

/// What runs whatever the traffic, from the template's parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Capacity {
    /// Inference pool instances at the least (the template's `InferenceMinCapacity`).
    pub inference_min_instances: u64,
    /// Embeddings per second one pool instance serves (an assumption unless measured on the
    /// instance type).
    pub inference_embeddings_per_second: f64,
    /// Share of events the narrative stages send to the pool (0 = rules and templates only).
    pub model_share: f64,
    /// Feed service tasks at the least (`ServeMinCapacity`); 0 when the feed service is off.
    pub serve_tasks: u64,
    pub serve_task_vcpu: f64,
    pub serve_task_gb: f64,
    /// Queues an event source mapping polls, and the pollers each keeps long-polling when idle.
    pub polled_queues: u64,
    pub idle_pollers_per_queue: u64,
}

impl Capacity {
    /// The template's capacity settings (parameter defaults) with the traffic assumptions the
    /// template cannot know: the share of events sent to the model, what one pool instance
    /// serves, whether the feed service runs, and how many pollers an idle mapping keeps.
    pub fn from_template(
        template: &Template,
        model_share: f64,
        inference_embeddings_per_second: f64,
        feed_service: bool,
        idle_pollers_per_queue: u64,
    ) -> Capacity {
        let parameter = |name: &str| template.parameter_default(name).and_then(as_u64);
        let polled_queues = template
            .resources_of("AWS::Serverless::Function")
            .iter()
            .filter(|function| {
                function
                    .property("Events")
                    .and_then(|events| events.as_mapping())
                    .is_some_and(|events| {
                        events.values().any(|event| {
                            event.get("Type").and_then(|kind| kind.as_str()) == Some("SQS")
                        })
                    })
            })
            .count() as u64;
        Capacity {
            inference_min_instances: parameter("InferenceMinCapacity").unwrap_or(1),
            inference_embeddings_per_second,
            model_share,
            serve_tasks: if feed_service {
                parameter("ServeMinCapacity").unwrap_or(1)
            } else {
                0
            },
            serve_task_vcpu: parameter("ServeTaskCpu").unwrap_or(1024) as f64 / 1024.0,
            serve_task_gb: parameter("ServeTaskMemoryMiB").unwrap_or(2048) as f64 / 1024.0,
            polled_queues,
            idle_pollers_per_queue,
        }
    }
}

/// A month of a world: the run's bill scaled to its events, plus the capacity that runs anyway.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Month {
    pub events_per_second: f64,
    pub events: f64,
    pub lines: Vec<BillLine>,
    pub dollars: f64,
    pub dollars_per_million_events: f64,
}

impl Month {
    /// A month at `events_per_second` on average.
    pub fn at(
        bill: &Bill,
        events_per_second: f64,
        capacity: &Capacity,
        prices: &PriceList,
    ) -> Month {
        let events = events_per_second * HOURS_PER_MONTH * 3600.0;
        let millions = events / 1e6;
        let mut lines: Vec<BillLine> = bill
            .lines
            .iter()
            .map(|line| BillLine {
                quantity: line.quantity * millions,
                dollars: line.dollars * millions,
                ..line.clone()
            })
            .collect();
        let needed = (events_per_second * capacity.model_share
            / capacity
                .inference_embeddings_per_second
                .max(f64::MIN_POSITIVE))
        .ceil() as u64;
        let instances = needed.max(capacity.inference_min_instances);
        lines.push(BillLine::new(
            format!(
                "inference pool ({instances} × {}, {:.0} % of events to the model at {} embeddings/s per instance)",
                prices.gpu_instance_type,
                capacity.model_share * 100.0,
                capacity.inference_embeddings_per_second
            ),
            instances as f64 * HOURS_PER_MONTH,
            "instance-hours",
            prices.gpu_instance_per_hour,
        ));
        if capacity.serve_tasks > 0 {
            let task_hours = capacity.serve_tasks as f64 * HOURS_PER_MONTH;
            lines.push(BillLine::new(
                format!(
                    "feed service vCPU ({} Fargate x86 tasks × {} vCPU)",
                    capacity.serve_tasks, capacity.serve_task_vcpu
                ),
                task_hours * capacity.serve_task_vcpu,
                "vCPU-hours",
                prices.fargate_x86_per_vcpu_hour,
            ));
            lines.push(BillLine::new(
                format!(
                    "feed service memory ({} tasks × {} GB)",
                    capacity.serve_tasks, capacity.serve_task_gb
                ),
                task_hours * capacity.serve_task_gb,
                "GB-hours",
                prices.fargate_x86_per_gb_hour,
            ));
            lines.push(BillLine::new(
                "feed service load balancer (ALB hours; LCUs not counted)".to_owned(),
                HOURS_PER_MONTH,
                "hours",
                prices.alb_per_hour,
            ));
        }
        // A long poll waits 20 s: three receives a minute per idle poller.
        let idle_requests = capacity.polled_queues as f64
            * capacity.idle_pollers_per_queue as f64
            * 3.0
            * 60.0
            * HOURS_PER_MONTH;
        lines.push(BillLine::new(
            format!(
                "idle event-source polling ({} queues × {} pollers × 3 receives a minute; at most, traffic replaces it)",
                capacity.polled_queues, capacity.idle_pollers_per_queue
            ),
            idle_requests / 1e6,
            "M requests",
            prices.sqs_fifo_per_million_requests,
        ));
        let dollars: f64 = lines.iter().map(|line| line.dollars).sum();
        Month {
            events_per_second,
            events,
            lines,
            dollars,
            dollars_per_million_events: dollars / millions.max(f64::MIN_POSITIVE),
        }
    }
}

/// Usage and cost per event of a run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CostPerEvent {
    pub queue_requests: f64,
    pub table_write_units: f64,
    pub table_read_units: f64,
    /// Dollars per million events: queues, tables and the sum.
    pub queue_dollars_per_million: f64,
    pub table_dollars_per_million: f64,
    pub total_dollars_per_million: f64,
}

impl PriceList {
    /// What `usage` cost per event over `events` events (`None` for zero events);
    /// `fifo` picks the SQS FIFO price.
    pub fn per_event(
        &self,
        usage: &UsageSnapshot,
        events: u64,
        fifo: bool,
    ) -> Option<CostPerEvent> {
        if events == 0 {
            return None;
        }
        let per_event = |count: u64| count as f64 / events as f64;
        let queue_requests = per_event(usage.queue_requests);
        let table_write_units = per_event(usage.table_write_units);
        let table_read_units = per_event(usage.table_read_units);
        let queue_price = if fifo {
            self.sqs_fifo_per_million_requests
        } else {
            self.sqs_standard_per_million_requests
        };
        // Per event × price per million units = dollars per million events.
        let queue_dollars_per_million = queue_requests * queue_price;
        let table_dollars_per_million = table_write_units * self.dynamodb_per_million_write_units
            + table_read_units * self.dynamodb_per_million_read_units;
        Some(CostPerEvent {
            queue_requests,
            table_write_units,
            table_read_units,
            queue_dollars_per_million,
            table_dollars_per_million,
            total_dollars_per_million: queue_dollars_per_million + table_dollars_per_million,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9 * b.abs().max(1.0)
    }

    #[test]
    fn the_published_prices_parse_and_name_their_sources() {
        let prices = PriceList::published();
        assert_eq!(prices.region, "us-east-1");
        assert_eq!(prices.sqs_fifo_per_million_requests, 0.50);
        assert_eq!(prices.dynamodb_per_million_write_units, 0.625);
        for group in ["sqs", "dynamodb", "lambda", "fargate", "ec2", "elb"] {
            assert!(prices.sources.contains_key(group), "no source for {group}");
        }
    }

    #[test]
    fn a_broken_price_file_is_refused_with_its_reason() {
        let error = PriceList::parse("{}", "p.json").unwrap_err();
        assert!(error.to_string().contains("p.json"), "{error}");
        let mut text: serde_json::Value = serde_json::from_str(PUBLISHED).unwrap();
        text["lambda_per_million_requests"] = serde_json::json!(-1.0);
        let error = PriceList::parse(&text.to_string(), "p.json").unwrap_err();
        assert!(
            error.to_string().contains("lambda_per_million_requests"),
            "{error}"
        );
    }

    #[test]
    fn cost_per_million_events() {
        let usage = UsageSnapshot {
            queue_requests: 600,
            table_write_units: 300,
            table_read_units: 200,
            ..UsageSnapshot::default()
        };
        let prices = PriceList::published();
        let cost = prices.per_event(&usage, 100, true).unwrap();
        assert_eq!(cost.queue_requests, 6.0);
        assert!(close(cost.queue_dollars_per_million, 3.0));
        assert!(close(
            cost.table_dollars_per_million,
            3.0 * 0.625 + 2.0 * 0.125
        ));
        assert!(prices.per_event(&usage, 0, true).is_none());
    }

    fn run() -> RunMeasure {
        RunMeasure {
            events: 1_000,
            fan_out: 8,
            stages: vec![StageMeasure {
                stage: "intake".into(),
                queue_requests: 300,
                write_units: 2_000,
                read_units: 1_000,
                invocations: 100,
                billed_ms: 2_000,
                memory_mb: 256,
            }],
            stored_bytes: BTreeMap::from([("ledger".into(), 500_000), ("feeds".into(), 500_000)]),
        }
    }

    #[test]
    fn every_line_of_a_bill_is_its_quantity_times_its_price() {
        let prices = PriceList::published();
        let bill = Bill::per_million_events(&run(), &prices, 30.416_666_666_666_668);
        // Per million events: 0.3 M SQS requests, 2 M WRU, 1 M RRU, 0.1 M invocations,
        // 2,000 s × 0.25 GB = 500 GB-s, 1 GB stored for one month.
        let expected = 0.3 * 0.50
            + 2.0 * 0.625
            + 1.0 * 0.125
            + 0.1 * 0.20
            + 500.0 * 0.000_013_333_4
            + 1.0 * 0.25;
        assert!(
            close(bill.dollars_per_million_events, expected),
            "{} vs {expected}",
            bill.dollars_per_million_events
        );
        assert!(close(
            bill.dollars_of("Lambda"),
            0.02 + 500.0 * 0.000_013_333_4
        ));
        for line in &bill.lines {
            assert!(
                close(line.dollars, line.quantity * line.unit_price),
                "{line:?}"
            );
        }
    }

    #[test]
    fn the_template_gives_the_capacity_that_runs_anyway() {
        let template = Template::from_path(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../infra/template.yaml"
        ))
        .unwrap();
        let capacity = Capacity::from_template(&template, 1.0, 200.0, true, 5);
        assert_eq!(capacity.inference_min_instances, 1);
        assert_eq!(capacity.serve_tasks, 2);
        assert_eq!(capacity.serve_task_vcpu, 1.0);
        assert_eq!(capacity.serve_task_gb, 2.0);
        // Every stage fed by a queue: intake, classify, compose, distribute, prune, market,
        // price window, production, ecology input, ecology.
        assert_eq!(capacity.polled_queues, 10);
        assert_eq!(
            Capacity::from_template(&template, 1.0, 200.0, false, 5).serve_tasks,
            0
        );
    }

    #[test]
    fn a_month_adds_the_capacity_that_runs_anyway() {
        let prices = PriceList::published();
        let bill = Bill::per_million_events(&run(), &prices, 7.0);
        let capacity = Capacity {
            inference_min_instances: 1,
            inference_embeddings_per_second: 100.0,
            model_share: 1.0,
            serve_tasks: 2,
            serve_task_vcpu: 1.0,
            serve_task_gb: 2.0,
            polled_queues: 4,
            idle_pollers_per_queue: 5,
        };
        let month = Month::at(&bill, 250.0, &capacity, &prices);
        let millions = 250.0 * 730.0 * 3600.0 / 1e6;
        let pool = 3.0 * 730.0 * prices.gpu_instance_per_hour;
        let serve = 2.0 * 730.0 * (1.0 * 0.04048 + 2.0 * 0.004445) + 730.0 * 0.0225;
        let idle = 4.0 * 5.0 * 3.0 * 60.0 * 730.0 / 1e6 * 0.50;
        let expected = bill.dollars_per_million_events * millions + pool + serve + idle;
        assert!(
            close(month.dollars, expected),
            "{} vs {expected}",
            month.dollars
        );
        let quiet = Month::at(&bill, 1.0, &capacity, &prices);
        assert!(
            quiet
                .lines
                .iter()
                .any(|line| line.item.starts_with("inference pool (1 ×")),
            "the pool never goes under its minimum"
        );
    }
}
