//! A fleet of stage pollers in one process, and the steps of driving a world through it.
//!
//! Used by `worldfleet run` (embedded store), `worldfleet worker` (SQS and DynamoDB) and the
//! end-to-end tests: start the stages, post a world's envelopes to intake, wait for every queue
//! to drain, audit.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinHandle;
use worldfleet_classify::Classify;
use worldfleet_compose::Compose;
use worldfleet_distribute::{Distribute, RepublishRules};
use worldfleet_domain::names::{ALL_QUEUES, INTAKE_QUEUE};
use worldfleet_intake::{Intake, IntakeConfig};
use worldfleet_kit::{StageContext, StageHandler};
use worldfleet_ports::{Clock, OutgoingMessage, Queue, SendOutcome};
use worldfleet_prune::{Prune, PruneConfig};

use crate::faults::FaultPlan;
use crate::poller::{PollerConfig, PollerStats, run_stage};
use crate::world::{Expectation, World};

/// The stages of one process, each driven by its pollers.
pub struct Fleet {
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    stats: Vec<(&'static str, Arc<PollerStats>)>,
}

impl Fleet {
    /// Starts pollers for every handler on `queue`.
    pub fn start(
        handlers: Vec<Arc<dyn StageHandler>>,
        queue: Arc<dyn Queue>,
        poller: PollerConfig,
        faults: Option<Arc<FaultPlan>>,
    ) -> Self {
        let (shutdown, watcher) = watch::channel(false);
        let mut tasks = Vec::new();
        let mut stats = Vec::new();
        for handler in handlers {
            let stage_stats = Arc::new(PollerStats::default());
            stats.push((handler.name(), Arc::clone(&stage_stats)));
            tasks.push(tokio::spawn(run_stage(
                handler,
                Arc::clone(&queue),
                poller,
                watcher.clone(),
                stage_stats,
                faults.clone(),
            )));
        }
        Self {
            shutdown,
            tasks,
            stats,
        }
    }

    /// Per-stage poller statistics.
    pub fn stats(&self) -> &[(&'static str, Arc<PollerStats>)] {
        &self.stats
    }

    /// Waits until shutdown is requested with Ctrl-C (or SIGTERM), then stops gracefully.
    pub async fn run_until_signalled(self) {
        let terminate = async {
            #[cfg(unix)]
            if let Ok(mut signal) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            {
                signal.recv().await;
                return;
            }
            std::future::pending::<()>().await;
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate => {}
        }
        tracing::info!("shutting down: finishing in-flight batches");
        self.stop().await;
    }

    /// Records distribute has processed so far.
    pub fn distributed(&self) -> u64 {
        self.stats
            .iter()
            .find(|(name, _)| *name == "distribute")
            .map_or(0, |(_, stats)| {
                stats.succeeded.load(std::sync::atomic::Ordering::Relaxed)
            })
    }

    /// Graceful stop: pollers finish their batch and exit.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }

    /// A crash: every in-flight batch is abandoned wherever it is.
    pub async fn kill(self) {
        for task in &self.tasks {
            task.abort();
        }
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// The four narrative stages over `context`.
pub fn narrative_stages(
    context: &StageContext,
    intake: IntakeConfig,
    rules: RepublishRules,
) -> Vec<Arc<dyn StageHandler>> {
    vec![
        Arc::new(Intake::new(context.clone(), intake)),
        Arc::new(Classify::new(context.clone())),
        Arc::new(Compose::new(context.clone())),
        Arc::new(Distribute::new(context.clone(), rules)),
        Arc::new(Prune::new(context.clone(), PruneConfig::default())),
    ]
}

/// Messages not yet deleted across every work queue.
pub async fn backlog(queue: &dyn Queue) -> anyhow::Result<u64> {
    let mut total = 0;
    for name in ALL_QUEUES {
        total += queue.depth(name).await?.total();
    }
    Ok(total)
}

/// Polls every work queue until all are empty three checks running, or `timeout` passes;
/// true when drained. `on_tick` runs between checks (progress display).
pub async fn wait_for_drain(
    queue: &dyn Queue,
    timeout: Duration,
    mut on_tick: impl FnMut(),
) -> anyhow::Result<bool> {
    let started = Instant::now();
    let mut quiet_checks = 0;
    while started.elapsed() < timeout {
        on_tick();
        if backlog(queue).await? == 0 {
            quiet_checks += 1;
            if quiet_checks >= 3 {
                return Ok(true);
            }
        } else {
            quiet_checks = 0;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(false)
}

/// How the world is posted.
#[derive(Debug, Clone, Copy)]
pub struct Posting {
    /// Envelopes per second; `None`: as fast as the backlog allows.
    pub rate: Option<f64>,
    /// Most messages waiting in the work queues before posting holds back.
    pub max_backlog: u64,
    /// When posting began (the rate is kept relative to it).
    pub started: Instant,
    /// Envelopes already posted since `started` (a resumed posting keeps the rate).
    pub already_sent: u64,
    /// Stop once this many good events were emitted (`None`: when the world is finished).
    pub stop_after_good: Option<u64>,
}

/// Posts the world's envelopes to intake, ten per request, until the world is finished or
/// `stop_after_good` good events were emitted. Sends are retried until accepted, as a gateway
/// would. Returns what each posted envelope should become.
pub async fn post_world(
    queue: &dyn Queue,
    world: &mut World,
    clock: &dyn Clock,
    posting: Posting,
    mut on_batch: impl FnMut(),
) -> anyhow::Result<Vec<Expectation>> {
    let mut expectations = Vec::new();
    let mut sent = posting.already_sent;
    let started = posting.started;
    while !world.finished()
        && posting
            .stop_after_good
            .is_none_or(|limit| world.good_emitted() < limit)
    {
        let mut batch = Vec::new();
        while batch.len() < worldfleet_ports::queue::MAX_BATCH {
            match world.next(clock.now_ms()) {
                Some(emitted) => batch.push(emitted),
                None => break,
            }
        }
        let messages: Vec<OutgoingMessage> = batch
            .iter()
            .map(|emitted| {
                OutgoingMessage::fifo(emitted.body.clone(), &emitted.group, &emitted.dedup_id)
            })
            .collect();
        let mut attempts = 0;
        loop {
            match queue.send_batch(INTAKE_QUEUE, messages.clone()).await {
                Ok(outcomes)
                    if outcomes
                        .iter()
                        .all(|outcome| matches!(outcome, SendOutcome::Sent { .. })) =>
                {
                    break;
                }
                outcome => {
                    attempts += 1;
                    if attempts % 50 == 0 {
                        tracing::warn!(
                            ?outcome,
                            attempts,
                            "intake keeps refusing a batch; retrying"
                        );
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
        sent += batch.len() as u64;
        expectations.extend(batch.into_iter().map(|emitted| emitted.expectation));
        match posting.rate {
            Some(rate) => {
                let due = Duration::from_secs_f64(sent as f64 / rate.max(1.0));
                if let Some(wait) = due.checked_sub(started.elapsed()) {
                    tokio::time::sleep(wait).await;
                }
            }
            None if sent % 500 < 10 => {
                while backlog(queue).await? > posting.max_backlog {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
            None => {}
        }
        on_batch();
    }
    Ok(expectations)
}
