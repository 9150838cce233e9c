//! The stage registry: every stage once, and the one function that builds stages for any mode.
//!
//! A stage is registered here with its name, what it touches ([`StageResources`], the source
//! of least-privilege roles) and its role in a process (an input stage whose queue runs dry, a
//! timer stage fed by self-re-arming timers, or the scheduled watchdog). [`StageSettings`] is
//! every stage's typed configuration, read once from an environment ([`StageSettings::from_vars`]);
//! [`build_stage`] and [`build_stages`] turn a name and those settings into a running stage.
//!
//! Every run mode — `worldfleet run` (embedded), `worldfleet serve`, `worldfleet worker`,
//! `worldfleet bench --aws`, the replay and every Lambda binary — builds its stages here, so the
//! same environment gives the same stages with the same settings whichever way they run. A mode
//! may override a setting it owns (the embedded run's synthetic gateway key, the in-process
//! model); it never constructs a stage itself.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use worldfleet_classify::config::EmbeddingsConfig;
use worldfleet_classify::{Classifier, Classify};
use worldfleet_compose::config::ModelsConfig;
use worldfleet_compose::{Compose, Composer};
use worldfleet_distribute::{Distribute, RepublishRules};
use worldfleet_domain::names::{STAGES, StageResources, WATCHDOG};
use worldfleet_ecology::{EcologyConfig, EcologyInputStage, EcologyTickStage};
use worldfleet_intake::{Intake, IntakeConfig};
use worldfleet_kit::{Env, StageContext, StageHandler, Variable};
use worldfleet_price::{MarketStage, PriceConfig, ProductionStage, WindowStage};
use worldfleet_prune::{Prune, PruneConfig};

pub mod variables;

/// How a stage runs in a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StageRole {
    /// Consumes what gateways and other stages send; its queue runs dry when the world stops.
    Input,
    /// Consumes delayed timers that re-arm themselves; stopped first on shutdown.
    Timer,
    /// Runs on a schedule, not from a queue (the watchdog).
    Scheduled,
}

/// One registered stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StageEntry {
    /// What it touches; `resources.stage` is its name, binary and function name.
    pub resources: &'static StageResources,
    /// How it runs.
    pub role: StageRole,
}

impl StageEntry {
    /// The stage's name.
    pub fn name(&self) -> &'static str {
        self.resources.stage
    }
}

/// Every stage, in pipeline order: the narrative path, the world, then the watchdog.
pub const REGISTRY: [StageEntry; 11] = [
    input(&STAGES[0]),
    input(&STAGES[1]),
    input(&STAGES[2]),
    input(&STAGES[3]),
    input(&STAGES[4]),
    input(&STAGES[5]),
    timer(&STAGES[6]),
    timer(&STAGES[7]),
    input(&STAGES[8]),
    timer(&STAGES[9]),
    StageEntry {
        resources: &WATCHDOG,
        role: StageRole::Scheduled,
    },
];

const fn input(resources: &'static StageResources) -> StageEntry {
    StageEntry {
        resources,
        role: StageRole::Input,
    }
}

const fn timer(resources: &'static StageResources) -> StageEntry {
    StageEntry {
        resources,
        role: StageRole::Timer,
    }
}

/// The narrative stages, the default of the narrative-only modes (`bench --aws`, replay).
pub const NARRATIVE_STAGES: [&str; 5] = ["intake", "classify", "compose", "distribute", "prune"];

/// The world's stages and the watchdog that keeps their timer chains alive.
pub const WORLD_STAGES: [&str; 6] = [
    "market",
    "price-window",
    "production",
    "ecology-input",
    "ecology",
    "watchdog",
];

/// The registered stage called `name`.
pub fn entry(name: &str) -> Option<&'static StageEntry> {
    REGISTRY.iter().find(|entry| entry.name() == name)
}

/// Every stage name, in registry order.
pub fn all_names() -> Vec<&'static str> {
    REGISTRY.iter().map(StageEntry::name).collect()
}

/// Why a stage could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// No stage has this name.
    #[error("unknown stage {name:?}; stages are {}", all_names().join(", "))]
    UnknownStage { name: String },
    /// The stage's settings are missing or unusable.
    #[error("{stage}: {problem}")]
    Settings {
        stage: &'static str,
        problem: String,
    },
}

/// Which classifier classify runs.
#[derive(Clone)]
pub enum ClassifierSetting {
    /// Keyword and structure rules.
    Rules,
    /// Embedding similarity against the inference pool over HTTP.
    Pool(EmbeddingsConfig),
    /// A classifier the mode built itself (the embedded run's in-process model).
    Given(Classifier),
}

/// Which composer compose runs.
#[derive(Clone)]
pub enum ComposerSetting {
    /// Deterministic templates.
    Templates,
    /// An OpenAI-compatible model server, with budgets over the stage's table.
    Models(ModelsConfig),
    /// A composer the mode built itself.
    Given(Composer),
}

/// Every stage's settings, read once per process.
#[derive(Clone)]
pub struct StageSettings {
    /// intake's keys and limits; an error (why they are unusable) until keys are configured.
    pub intake: Result<IntakeConfig, String>,
    pub republish: RepublishRules,
    pub classifier: ClassifierSetting,
    pub composer: ComposerSetting,
    /// prune's settings, also those of the watchdog's daily sweep.
    pub prune: PruneConfig,
    pub ecology: EcologyConfig,
    pub price: PriceConfig,
    /// How often the watchdog runs in a long-running process (EventBridge decides on Lambda).
    pub watchdog_interval: Duration,
}

impl StageSettings {
    /// The settings in the process environment.
    pub fn from_env() -> Result<Self, RegistryError> {
        Self::from_vars(&Env::process())
    }

    /// The settings in `env`: every variable of [`variables::ALL`]. Unusable values are errors
    /// that name the variable; missing gateway keys are an error only when intake is built.
    pub fn from_vars(env: &Env) -> Result<Self, RegistryError> {
        let settings =
            |stage: &'static str| move |problem: String| RegistryError::Settings { stage, problem };
        let keys = env.text(worldfleet_intake::config::KEYS_VARIABLE);
        let secret = env.text(worldfleet_intake::config::SECRET_VARIABLE);
        let intake = if keys.is_none() && secret.is_none() {
            Err(format!(
                "{} is not set (GATEWAY=HEXKEY,…), nor {}",
                worldfleet_intake::config::KEYS_VARIABLE,
                worldfleet_intake::config::SECRET_VARIABLE
            ))
        } else {
            Ok(IntakeConfig::from_vars(env)
                .map_err(|error| error.to_string())
                .map_err(settings("intake"))?)
        };
        let republish = RepublishRules::from_vars(env)
            .map_err(|error| error.to_string())
            .map_err(settings("distribute"))?;
        let classifier = match EmbeddingsConfig::from_vars(env).map_err(settings("classify"))? {
            Some(pool) => ClassifierSetting::Pool(pool),
            None => ClassifierSetting::Rules,
        };
        let composer = match ModelsConfig::from_vars(env).map_err(settings("compose"))? {
            Some(models) => ComposerSetting::Models(models),
            None => ComposerSetting::Templates,
        };
        let prune = PruneConfig::from_vars(env)
            .map_err(|error| error.to_string())
            .map_err(settings("prune"))?;
        let ecology = EcologyConfig::from_vars(env)
            .map_err(|error| error.to_string())
            .map_err(settings("ecology"))?;
        let price = PriceConfig::builtin()
            .map_err(|error| error.to_string())
            .map_err(settings("market"))?;
        Ok(Self {
            intake,
            republish,
            classifier,
            composer,
            prune,
            ecology,
            price,
            watchdog_interval: Duration::from_secs(60),
        })
    }

    /// Settings with the given intake configuration and every other setting at its default
    /// (rules, templates, the shipped republish rules): tests and benchmarks.
    pub fn defaults_with(intake: IntakeConfig) -> Result<Self, RegistryError> {
        let empty = |_: &str| None;
        let mut settings = Self::from_vars(&Env::from_lookup(&empty))?;
        settings.intake = Ok(intake);
        Ok(settings)
    }
}

/// The watchdog of a long-running process: its ports, interval and prune's settings.
#[derive(Clone)]
pub struct WatchdogSpec {
    pub context: StageContext,
    pub interval: Duration,
    pub prune: PruneConfig,
}

/// One built stage.
pub enum BuiltStage {
    /// An input stage's handler.
    Input(Arc<dyn StageHandler>),
    /// A timer stage's handler.
    Timer(Arc<dyn StageHandler>),
    /// The watchdog.
    Watchdog(WatchdogSpec),
}

impl BuiltStage {
    /// The handler of a queue-fed stage; `None` for the watchdog.
    pub fn handler(&self) -> Option<&Arc<dyn StageHandler>> {
        match self {
            Self::Input(handler) | Self::Timer(handler) => Some(handler),
            Self::Watchdog(_) => None,
        }
    }
}

/// Builds the stage `name` over `context` with `settings`: the one place a stage is made.
pub fn build_stage(
    name: &str,
    context: &StageContext,
    settings: &StageSettings,
) -> Result<BuiltStage, RegistryError> {
    let entry = entry(name).ok_or_else(|| RegistryError::UnknownStage {
        name: name.to_owned(),
    })?;
    let context = context.clone();
    let handler: Arc<dyn StageHandler> = match entry.name() {
        "intake" => {
            let config = settings
                .intake
                .clone()
                .map_err(|problem| RegistryError::Settings {
                    stage: "intake",
                    problem,
                })?;
            if let Some(secret) = &config.key_secret {
                return Err(RegistryError::Settings {
                    stage: "intake",
                    problem: format!(
                        "{}={} is loaded by the AWS run modes (worker, serve, the Lambda \
                         functions) before intake is built; this mode takes {}",
                        worldfleet_intake::config::SECRET_VARIABLE,
                        secret.id,
                        worldfleet_intake::config::KEYS_VARIABLE
                    ),
                });
            }
            Arc::new(Intake::new(context, config))
        }
        "classify" => {
            let classifier = match &settings.classifier {
                ClassifierSetting::Rules => Classifier::Rules,
                ClassifierSetting::Pool(pool) => pool
                    .classifier(Arc::clone(&context.clock))
                    .map_err(|problem| RegistryError::Settings {
                        stage: "classify",
                        problem,
                    })?,
                ClassifierSetting::Given(classifier) => classifier.clone(),
            };
            Arc::new(Classify::with_classifier(context, classifier))
        }
        "compose" => {
            let composer = match &settings.composer {
                ComposerSetting::Templates => Composer::Templates,
                ComposerSetting::Models(models) => models
                    .composer(Arc::clone(&context.table), Arc::clone(&context.clock))
                    .map_err(|problem| RegistryError::Settings {
                        stage: "compose",
                        problem,
                    })?,
                ComposerSetting::Given(composer) => composer.clone(),
            };
            Arc::new(Compose::with_composer(context, composer))
        }
        // distribute asks prune to evict a player's memory once it passes prune's cap: one
        // setting for both, so a cap below the default takes effect.
        "distribute" => Arc::new(
            Distribute::new(context, settings.republish.clone())
                .with_memory_cap(settings.prune.memory_cap_bytes),
        ),
        "prune" => Arc::new(Prune::new(context, settings.prune.clone())),
        "market" => Arc::new(MarketStage::new(context, settings.price.clone())),
        "price-window" => Arc::new(WindowStage::new(context, settings.price.clone())),
        "production" => Arc::new(ProductionStage::new(context, settings.price.clone())),
        "ecology-input" => Arc::new(EcologyInputStage::new(context)),
        "ecology" => Arc::new(EcologyTickStage::new(context, settings.ecology.clone())),
        "watchdog" => {
            return Ok(BuiltStage::Watchdog(WatchdogSpec {
                context,
                interval: settings.watchdog_interval,
                prune: settings.prune.clone(),
            }));
        }
        other => unreachable!("registered stage {other} has no builder"),
    };
    Ok(match entry.role {
        StageRole::Input => BuiltStage::Input(handler),
        StageRole::Timer | StageRole::Scheduled => BuiltStage::Timer(handler),
    })
}

/// What one process runs: input stages, timer stages and, optionally, the watchdog.
#[derive(Default)]
pub struct StageSet {
    /// Stages whose queues run dry once the world stops posting.
    pub inputs: Vec<Arc<dyn StageHandler>>,
    /// Stages fed by self-re-arming timers; stopped first.
    pub timers: Vec<Arc<dyn StageHandler>>,
    /// The watchdog, when it runs in this process.
    pub watchdog: Option<WatchdogSpec>,
    /// Durations of applied production ticks, microseconds (when production runs).
    pub production_latencies_us: Option<Arc<Mutex<Vec<u64>>>>,
}

impl StageSet {
    /// Stage names, input stages first.
    pub fn names(&self) -> Vec<&'static str> {
        let mut names: Vec<&'static str> = self
            .inputs
            .iter()
            .chain(&self.timers)
            .map(|handler| handler.name())
            .collect();
        if self.watchdog.is_some() {
            names.push(WATCHDOG.stage);
        }
        names
    }

    /// One line per stage saying what it runs (`classify: embeddings via …`), for start-up logs.
    pub fn describe(&self) -> Vec<String> {
        let mut lines: Vec<String> = self
            .inputs
            .iter()
            .chain(&self.timers)
            .map(|handler| handler.describe())
            .collect();
        if let Some(watchdog) = &self.watchdog {
            lines.push(format!(
                "watchdog: every {} s, prune sweep daily",
                watchdog.interval.as_secs()
            ));
        }
        lines
    }
}

/// Builds the stages `names` (each at most once, in registry order whatever the order given).
pub fn build_stages<S: AsRef<str>>(
    names: &[S],
    context: &StageContext,
    settings: &StageSettings,
) -> Result<StageSet, RegistryError> {
    for name in names {
        if entry(name.as_ref()).is_none() {
            return Err(RegistryError::UnknownStage {
                name: name.as_ref().to_owned(),
            });
        }
    }
    let mut set = StageSet::default();
    for entry in &REGISTRY {
        if !names.iter().any(|name| name.as_ref() == entry.name()) {
            continue;
        }
        if entry.name() == "production" {
            let production = ProductionStage::new(context.clone(), settings.price.clone());
            set.production_latencies_us = Some(production.latency_handle());
            set.timers.push(Arc::new(production));
            continue;
        }
        match build_stage(entry.name(), context, settings)? {
            BuiltStage::Input(handler) => set.inputs.push(handler),
            BuiltStage::Timer(handler) => set.timers.push(handler),
            BuiltStage::Watchdog(spec) => set.watchdog = Some(spec),
        }
    }
    Ok(set)
}

/// Every documented variable of every stage, for the configuration table.
pub fn stage_variables() -> Vec<(&'static str, &'static Variable)> {
    variables::ALL
        .iter()
        .flat_map(|(stage, list)| list.iter().map(move |variable| (*stage, variable)))
        .collect()
}

#[cfg(test)]
mod tests;
