//! A fleet of stage pollers in one process, and the steps of driving a world through it.
//!
//! Used by `worldfleet run` (embedded store), `worldfleet worker` (SQS and DynamoDB) and the
//! end-to-end tests: start the stages, post a world's envelopes to intake, wait for every queue
//! to drain, audit.
//!
//! A fleet runs two kinds of stages. Input stages consume what gateways and other stages send
//! (the narrative stages, the market and ecology inputs); their queues run dry when the world
//! stops posting. Timer stages (price windows, production ticks, ecology ticks) and the
//! watchdog consume delayed timers that re-arm themselves and never run dry: they have their
//! own shutdown and stop first ([`Fleet::stop_timers`]) so a run can settle and finish.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use worldfleet_domain::names::INTAKE_QUEUE;
use worldfleet_kit::{StageContext, StageHandler};
use worldfleet_ports::{Clock, OutgoingMessage, Queue, SendOutcome};
use worldfleet_stages::{REGISTRY, StageRole};
use worldfleet_testbed::faults::FaultPlan;
use worldfleet_testbed::world::{Emitted, Expectation, World};

use crate::poller::{PollerConfig, PollerStats, run_stage};

/// What a fleet runs: the stage set the registry built ([`worldfleet_stages::build_stages`]).
pub type FleetStages = worldfleet_stages::StageSet;

/// The stages of one process, each driven by its pollers.
pub struct Fleet {
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    stats: Vec<(&'static str, Arc<PollerStats>)>,
    /// Timer stages and the watchdog: their own shutdown, used first.
    timer_shutdown: watch::Sender<bool>,
    timer_tasks: Vec<JoinHandle<()>>,
    production_latencies_us: Option<Arc<Mutex<Vec<u64>>>>,
}

impl Fleet {
    /// Starts pollers for every handler on `queue` (input stages only).
    pub fn start(
        handlers: Vec<Arc<dyn StageHandler>>,
        queue: Arc<dyn Queue>,
        poller: PollerConfig,
        faults: Option<Arc<FaultPlan>>,
    ) -> Self {
        let stages = FleetStages {
            inputs: handlers,
            ..FleetStages::default()
        };
        Self::launch(stages, queue, poller, faults)
    }

    /// Starts pollers for every stage on `queue`, and the watchdog when asked.
    pub fn launch(
        stages: FleetStages,
        queue: Arc<dyn Queue>,
        poller: PollerConfig,
        faults: Option<Arc<FaultPlan>>,
    ) -> Self {
        let (shutdown, watcher) = watch::channel(false);
        let (timer_shutdown, timer_watcher) = watch::channel(false);
        let mut tasks = Vec::new();
        let mut timer_tasks = Vec::new();
        let mut stats = Vec::new();
        let mut spawn = |handler: Arc<dyn StageHandler>, watcher: watch::Receiver<bool>| {
            let stage_stats = Arc::new(PollerStats::default());
            stats.push((handler.name(), Arc::clone(&stage_stats)));
            tokio::spawn(run_stage(
                handler,
                Arc::clone(&queue),
                poller,
                watcher,
                stage_stats,
                faults.clone(),
            ))
        };
        for handler in stages.inputs {
            tasks.push(spawn(handler, watcher.clone()));
        }
        for handler in stages.timers {
            timer_tasks.push(spawn(handler, timer_watcher.clone()));
        }
        if let Some(watchdog) = stages.watchdog {
            timer_tasks.push(tokio::spawn(crate::simulation::run_watchdog(
                watchdog,
                timer_watcher,
            )));
        }
        Self {
            shutdown,
            tasks,
            stats,
            timer_shutdown,
            timer_tasks,
            production_latencies_us: stages.production_latencies_us,
        }
    }

    /// Production tick durations measured so far, microseconds.
    pub fn production_latencies(&self) -> Vec<u64> {
        self.production_latencies_us
            .as_ref()
            .and_then(|samples| samples.lock().ok().map(|samples| samples.clone()))
            .unwrap_or_default()
    }

    /// Graceful stop of the timer stages and the watchdog only; input stages keep running.
    pub async fn stop_timers(&mut self) {
        let _ = self.timer_shutdown.send(true);
        for task in self.timer_tasks.drain(..) {
            let _ = task.await;
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
        distributed(self.distribute_stats().as_deref())
    }

    /// Distribute's poller statistics (when this fleet runs distribute), to watch progress
    /// while the fleet itself is borrowed.
    pub fn distribute_stats(&self) -> Option<Arc<PollerStats>> {
        self.stats
            .iter()
            .find(|(name, _)| *name == "distribute")
            .map(|(_, stats)| Arc::clone(stats))
    }

    /// Graceful stop: timers first, then every poller finishes its batch and exits.
    pub async fn stop(mut self) {
        self.stop_timers().await;
        let _ = self.shutdown.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }

    /// A crash: every in-flight batch is abandoned wherever it is.
    pub async fn kill(self) {
        for task in self.tasks.iter().chain(&self.timer_tasks) {
            task.abort();
        }
        for task in self.tasks.into_iter().chain(self.timer_tasks) {
            let _ = task.await;
        }
    }
}

/// Records processed according to `stats` (0 without).
pub fn distributed(stats: Option<&PollerStats>) -> u64 {
    stats.map_or(0, |stats| {
        stats.succeeded.load(std::sync::atomic::Ordering::Relaxed)
    })
}

/// The world's end: waits until the world has settled ([`crate::simulation::settled`]) and
/// every input queue is empty, three checks running; stops the timer stages and the watchdog
/// (timers never run dry); completes the outbox of every cell's last tick; and waits for the
/// queues to drain again. True when all of it happened within `timeout` for each wait.
pub async fn settle_world(
    fleet: &mut Fleet,
    context: &StageContext,
    layout: &worldfleet_testbed::WorldLayout,
    timeout: Duration,
    mut on_tick: impl FnMut(),
) -> anyhow::Result<bool> {
    let queue = context.queue.as_ref();
    let started = Instant::now();
    let mut quiet_checks = 0;
    let mut settled = false;
    while started.elapsed() < timeout {
        on_tick();
        let world_settled =
            crate::simulation::settled(queue, context.table.as_ref(), layout).await?;
        if world_settled && backlog(queue).await? == 0 {
            quiet_checks += 1;
            if quiet_checks >= 3 {
                settled = true;
                break;
            }
        } else {
            quiet_checks = 0;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    fleet.stop_timers().await;
    crate::simulation::finish_outboxes(context, layout).await?;
    let drained = wait_for_drain(queue, timeout, on_tick).await?;
    Ok(settled && drained)
}

/// The queues of every input stage in the registry: what must drain before a run is done (the
/// timer stages' queues never run dry and do not count).
pub fn input_queues() -> impl Iterator<Item = &'static str> {
    REGISTRY
        .iter()
        .filter(|entry| entry.role == StageRole::Input)
        .map(|entry| entry.resources.consumes)
}

/// Messages not yet deleted across the [`input_queues`].
pub async fn backlog(queue: &dyn Queue) -> anyhow::Result<u64> {
    let mut total = 0;
    for name in input_queues() {
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

/// Where the world's gateway posts a batch: straight onto the intake queue
/// ([`QueueGateway`]), or through the HTTP door ([`crate::doors::Doors`]).
#[async_trait::async_trait]
pub trait WorldGateway: Send + Sync {
    /// Most envelopes in one post.
    fn batch_size(&self) -> usize;
    /// Most posts outstanding at once (as many clients posting concurrently).
    fn in_flight(&self) -> usize {
        1
    }
    /// Posts `batch`: `Ok(true)` once every envelope was taken (queued, or refused by a door
    /// that records why), `Ok(false)` when the whole batch should be posted again.
    async fn post(&self, batch: &[Emitted]) -> anyhow::Result<bool>;
}

/// Sends a [`QueueGateway`] keeps outstanding.
const QUEUE_GATEWAY_IN_FLIGHT: usize = 32;

/// Posting onto the intake queue itself, ten messages a request, as a gateway on SQS does.
pub struct QueueGateway<'a>(pub &'a dyn Queue);

#[async_trait::async_trait]
impl WorldGateway for QueueGateway<'_> {
    fn batch_size(&self) -> usize {
        worldfleet_ports::queue::MAX_BATCH
    }

    /// A gateway on SQS has many requests in flight; each send waits for its fsync here, so
    /// one at a time would cap intake at ten envelopes per fsync.
    fn in_flight(&self) -> usize {
        QUEUE_GATEWAY_IN_FLIGHT
    }

    async fn post(&self, batch: &[Emitted]) -> anyhow::Result<bool> {
        let messages: Vec<OutgoingMessage> = batch
            .iter()
            .map(|emitted| {
                OutgoingMessage::fifo(emitted.body.clone(), &emitted.group, &emitted.dedup_id)
            })
            .collect();
        match self.0.send_batch(INTAKE_QUEUE, messages).await {
            Ok(outcomes) => Ok(outcomes
                .iter()
                .all(|outcome| matches!(outcome, SendOutcome::Sent { .. }))),
            Err(error) => {
                tracing::debug!(%error, "intake queue send failed");
                Ok(false)
            }
        }
    }
}

/// Posts the world's envelopes onto the intake queue, ten per request ([`post_world_through`]
/// with a [`QueueGateway`]).
pub async fn post_world(
    queue: &dyn Queue,
    world: &mut World,
    clock: &dyn Clock,
    posting: Posting,
    on_batch: impl FnMut(),
) -> anyhow::Result<Vec<Expectation>> {
    post_world_through(&QueueGateway(queue), queue, world, clock, posting, on_batch).await
}

/// Posts the world's envelopes through `gateway` until the world is finished or
/// `stop_after_good` good events were emitted. Up to [`WorldGateway::in_flight`] posts are
/// outstanding at once, issued in order (so a FIFO group's envelopes are queued in order
/// unless a post has to be retried); posts are retried until taken, as a gateway would.
/// Returns what each posted envelope should become. `queue` is only read, for the backlog
/// that holds an unpaced posting back.
pub async fn post_world_through(
    gateway: &dyn WorldGateway,
    queue: &dyn Queue,
    world: &mut World,
    clock: &dyn Clock,
    posting: Posting,
    mut on_batch: impl FnMut(),
) -> anyhow::Result<Vec<Expectation>> {
    let mut expectations = Vec::new();
    let mut sent = posting.already_sent;
    // Envelopes taken from the world, posted or in flight.
    let mut issued = posting.already_sent;
    let started = posting.started;
    let batch_size = gateway.batch_size().max(1);
    let window = gateway.in_flight().max(1);
    let mut posts = futures::stream::FuturesOrdered::new();
    loop {
        let more = !world.finished()
            && posting
                .stop_after_good
                .is_none_or(|limit| world.good_emitted() < limit);
        if more && posts.len() < window {
            let wait = match posting.rate {
                Some(rate) => Duration::from_secs_f64(issued as f64 / rate.max(1.0))
                    .checked_sub(started.elapsed()),
                None => None,
            };
            if let Some(wait) = wait {
                if posts.is_empty() {
                    tokio::time::sleep(wait).await;
                } else {
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        done = posts.next() => {
                            if let Some(done) = done {
                                let batch = settle_post(gateway, done).await?;
                                sent += batch.len() as u64;
                                expectations.extend(batch.into_iter().map(|emitted| emitted.expectation));
                                on_batch();
                            }
                            continue;
                        }
                    }
                }
            } else if posting.rate.is_none() && issued % 500 < batch_size as u64 {
                while backlog(queue).await? > posting.max_backlog {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
            let mut batch = Vec::new();
            while batch.len() < batch_size {
                match world.next(clock.now_ms()) {
                    Some(emitted) => batch.push(emitted),
                    None => break,
                }
            }
            if batch.is_empty() {
                continue;
            }
            issued += batch.len() as u64;
            posts.push_back(async move {
                let taken = gateway.post(&batch).await;
                (batch, taken)
            });
            continue;
        }
        let Some(done) = posts.next().await else {
            break;
        };
        let batch = settle_post(gateway, done).await?;
        sent += batch.len() as u64;
        expectations.extend(batch.into_iter().map(|emitted| emitted.expectation));
        on_batch();
    }
    debug_assert_eq!(sent, issued);
    Ok(expectations)
}

/// A finished post: the batch once taken, re-posted (one at a time) until it is.
async fn settle_post(
    gateway: &dyn WorldGateway,
    (batch, taken): (Vec<Emitted>, anyhow::Result<bool>),
) -> anyhow::Result<Vec<Emitted>> {
    let mut attempts = 0;
    let mut taken = taken?;
    while !taken {
        attempts += 1;
        if attempts % 50 == 0 {
            tracing::warn!(attempts, "intake keeps refusing a batch; retrying");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        taken = gateway.post(&batch).await?;
    }
    Ok(batch)
}
