//! Gateway keys: the format they are written in, the live set intake verifies with, and where
//! that set comes from.
//!
//! A gateway may hold several active keys at once — the new one and the old one while a
//! rotation is under way — and an envelope is accepted when it verifies under any of them.
//! The keys are written either as text, `gw-1=NEWHEX|OLDHEX,gw-2=HEX`, or as a JSON object,
//! `{"gw-1": ["NEWHEX", "OLDHEX"], "gw-2": "HEX"}` (the form a Secrets Manager key/value secret
//! takes); [`KeySet::parse`] reads both.
//!
//! [`GatewayKeys`] is a shared handle: its clones see the same keys. Built from a
//! [`KeySource`] (the AWS modes' Secrets Manager secret) it refreshes itself when a batch
//! starts and the refresh interval has passed; a refresh that fails keeps the last good keys
//! and logs a warning. Key bytes are never printed: the `Debug` forms name gateways and count
//! keys, and every error names the gateway or the entry's position, never its text.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::error::{IntakeError, Result};

/// Shortest accepted key.
pub const MIN_KEY_BYTES: usize = 16;
/// Most keys one gateway may hold at once (each bad signature costs one HMAC per key).
pub const MAX_KEYS_PER_GATEWAY: usize = 4;
/// How soon a failed refresh is tried again (at most; never later than the interval).
pub const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(30);

/// One HMAC key. Its `Debug` form says how long it is, never what it is.
#[derive(Clone, PartialEq, Eq)]
pub struct GatewayKey(Vec<u8>);

impl GatewayKey {
    /// A key of these bytes.
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    /// The key's bytes, for the HMAC.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for GatewayKey {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "GatewayKey(<redacted, {} bytes>)", self.0.len())
    }
}

/// Every gateway's active keys, as read once.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct KeySet {
    keys: BTreeMap<String, Vec<GatewayKey>>,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material: gateway → how many keys.
        let counts: BTreeMap<&str, usize> = self
            .keys
            .iter()
            .map(|(gateway, keys)| (gateway.as_str(), keys.len()))
            .collect();
        formatter
            .debug_struct("KeySet")
            .field("keys_per_gateway", &counts)
            .finish()
    }
}

fn config(problem: String) -> IntakeError {
    IntakeError::Config(problem)
}

/// A key written in hex, checked; errors name `gateway`, never the text.
fn decode_key(gateway: &str, hex_key: &str) -> Result<GatewayKey> {
    let key = hex::decode(hex_key.trim())
        .map_err(|_| config(format!("a key of gateway {gateway:?} is not hex")))?;
    if key.len() < MIN_KEY_BYTES {
        return Err(config(format!(
            "a key of gateway {gateway:?} is shorter than {MIN_KEY_BYTES} bytes"
        )));
    }
    Ok(GatewayKey(key))
}

/// A gateway id as written: non-empty, no whitespace inside, printable (it is named in
/// errors, so it must not be able to carry a key by mistake: a key has no `=`).
fn checked_gateway(gateway: &str, position: usize) -> Result<String> {
    let gateway = gateway.trim();
    if gateway.is_empty() || gateway.len() > 64 || gateway.chars().any(char::is_whitespace) {
        return Err(config(format!(
            "gateway key entry {position} has no usable gateway id (GATEWAY=HEXKEY)"
        )));
    }
    Ok(gateway.to_owned())
}

impl KeySet {
    /// Keys written as text (`gw-1=NEWHEX|OLDHEX,gw-2=HEX`, whitespace around entries
    /// ignored) or as a JSON object (`{"gw-1": ["NEWHEX", "OLDHEX"], "gw-2": "HEX"}`). Every
    /// key is hex of at least [`MIN_KEY_BYTES`] bytes; a gateway has 1 to
    /// [`MAX_KEYS_PER_GATEWAY`] keys and appears once.
    pub fn parse(spec: &str) -> Result<Self> {
        if spec.trim_start().starts_with('{') {
            Self::parse_json(spec)
        } else {
            Self::parse_text(spec)
        }
    }

    fn parse_text(spec: &str) -> Result<Self> {
        let mut set = Self::default();
        for (index, entry) in spec
            .split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .enumerate()
        {
            // Position only: an entry without `=` may be a bare key pasted by mistake.
            let (gateway, keys) = entry.split_once('=').ok_or_else(|| {
                config(format!(
                    "gateway key entry {} is not GATEWAY=HEXKEY[|HEXKEY…]",
                    index + 1
                ))
            })?;
            let gateway = checked_gateway(gateway, index + 1)?;
            let keys = keys
                .split('|')
                .map(|key| decode_key(&gateway, key))
                .collect::<Result<Vec<_>>>()?;
            set.add(gateway, keys)?;
        }
        Ok(set)
    }

    fn parse_json(spec: &str) -> Result<Self> {
        // serde_json's messages quote what they could not read; only the position is kept.
        let value: serde_json::Value = serde_json::from_str(spec).map_err(|error| {
            config(format!(
                "gateway keys are not valid JSON (line {}, column {})",
                error.line(),
                error.column()
            ))
        })?;
        let serde_json::Value::Object(object) = value else {
            return Err(config(
                "gateway keys in JSON must be an object of gateway → key or [keys]".into(),
            ));
        };
        let mut set = Self::default();
        for (index, (gateway, keys)) in object.iter().enumerate() {
            let gateway = checked_gateway(gateway, index + 1)?;
            let written: Vec<&str> = match keys {
                serde_json::Value::String(key) => vec![key.as_str()],
                serde_json::Value::Array(keys) => keys
                    .iter()
                    .map(|key| {
                        key.as_str().ok_or_else(|| {
                            config(format!("a key of gateway {gateway:?} is not a hex string"))
                        })
                    })
                    .collect::<Result<_>>()?,
                _ => {
                    return Err(config(format!(
                        "gateway {gateway:?} needs a hex string or an array of them"
                    )));
                }
            };
            let keys = written
                .into_iter()
                .map(|key| decode_key(&gateway, key))
                .collect::<Result<Vec<_>>>()?;
            set.add(gateway, keys)?;
        }
        Ok(set)
    }

    fn add(&mut self, gateway: String, keys: Vec<GatewayKey>) -> Result<()> {
        if keys.is_empty() || keys.len() > MAX_KEYS_PER_GATEWAY {
            return Err(config(format!(
                "gateway {gateway:?} has {} keys; 1 to {MAX_KEYS_PER_GATEWAY} may be active",
                keys.len()
            )));
        }
        if self.keys.contains_key(&gateway) {
            return Err(config(format!(
                "gateway {gateway:?} appears twice; list all its keys in one entry"
            )));
        }
        self.keys.insert(gateway, keys);
        Ok(())
    }

    /// The active keys of `gateway` (empty when it has none).
    pub fn keys(&self, gateway: &str) -> &[GatewayKey] {
        self.keys.get(gateway).map(Vec::as_slice).unwrap_or(&[])
    }

    /// The gateways that have keys.
    pub fn gateways(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }

    /// True when no gateway has a key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// Where a refreshing [`GatewayKeys`] reads its keys: the AWS modes' Secrets Manager secret
/// (`worldfleet-lambda` adapts `worldfleet-aws`'s client), or a test's.
#[async_trait]
pub trait KeySource: Send + Sync {
    /// What it reads, for logs and errors (a secret's id; never a key).
    fn describe(&self) -> String;

    /// The keys' current text, in a form [`KeySet::parse`] reads. An error must say what
    /// failed without quoting the value.
    async fn fetch(&self) -> std::result::Result<String, String>;
}

struct Refresh {
    source: Arc<dyn KeySource>,
    interval: Duration,
    next_due: Mutex<Instant>,
    /// Held while one refresh runs; other callers go on with the current keys.
    running: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct Shared {
    current: RwLock<Arc<KeySet>>,
    refresh: Option<Refresh>,
}

/// The keys intake (and the doors) verify with: a shared handle whose clones see the same
/// set, fixed, or refreshed from a [`KeySource`] on a schedule.
#[derive(Clone, Default)]
pub struct GatewayKeys {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for GatewayKeys {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut debug = formatter.debug_struct("GatewayKeys");
        debug.field("gateways", &self.current().gateways().collect::<Vec<_>>());
        if let Some(refresh) = &self.shared.refresh {
            debug
                .field("source", &refresh.source.describe())
                .field("refresh_secs", &refresh.interval.as_secs());
        }
        debug.finish()
    }
}

impl GatewayKeys {
    /// Fixed keys from text or JSON (see [`KeySet::parse`]).
    pub fn parse(spec: &str) -> Result<Self> {
        Ok(Self::fixed(KeySet::parse(spec)?))
    }

    /// Fixed keys.
    pub fn fixed(set: KeySet) -> Self {
        Self {
            shared: Arc::new(Shared {
                current: RwLock::new(Arc::new(set)),
                refresh: None,
            }),
        }
    }

    /// Keys read from `source` now, then again whenever a batch starts `interval` after the
    /// last read. Fails when the first read fails or names no gateway.
    pub async fn load(source: Arc<dyn KeySource>, interval: Duration) -> Result<Self> {
        let set = read(source.as_ref()).await?;
        Ok(Self {
            shared: Arc::new(Shared {
                current: RwLock::new(Arc::new(set)),
                refresh: Some(Refresh {
                    source,
                    interval,
                    next_due: Mutex::new(Instant::now() + interval),
                    running: tokio::sync::Mutex::new(()),
                }),
            }),
        })
    }

    /// Sets `gateway`'s keys to this one key (every holder of the handle sees it).
    pub fn insert(&mut self, gateway: &str, key: Vec<u8>) {
        let mut current = self
            .shared
            .current
            .write()
            .unwrap_or_else(|e| e.into_inner());
        let mut set = KeySet::clone(&current);
        set.keys.insert(gateway.to_owned(), vec![GatewayKey(key)]);
        *current = Arc::new(set);
    }

    /// The keys now.
    pub fn current(&self) -> Arc<KeySet> {
        Arc::clone(
            &self
                .shared
                .current
                .read()
                .unwrap_or_else(|e| e.into_inner()),
        )
    }

    /// The active keys of `gateway` now (empty when it has none).
    pub fn keys_of(&self, gateway: &str) -> Vec<GatewayKey> {
        self.current().keys(gateway).to_vec()
    }

    /// True when no gateway has a key.
    pub fn is_empty(&self) -> bool {
        self.current().is_empty()
    }

    /// Where the keys are refreshed from and how often, when they are.
    pub fn source(&self) -> Option<(String, Duration)> {
        self.shared
            .refresh
            .as_ref()
            .map(|refresh| (refresh.source.describe(), refresh.interval))
    }

    /// Reads the source again when the interval has passed since the last read (a no-op for
    /// fixed keys, and while another caller is refreshing). A failed read, or keys that do not
    /// parse or name no gateway, keep the last good keys, log a warning and are tried again
    /// within [`RETRY_AFTER_FAILURE`].
    pub async fn refresh_if_due(&self) {
        let Some(refresh) = &self.shared.refresh else {
            return;
        };
        if Instant::now() < *refresh.next_due.lock().unwrap_or_else(|e| e.into_inner()) {
            return;
        }
        let Ok(_running) = refresh.running.try_lock() else {
            return;
        };
        let _ = self.refresh_locked(refresh).await;
    }

    /// Reads the source now (fixed keys: nothing to do). On failure the last good keys stay.
    pub async fn refresh_now(&self) -> Result<()> {
        let Some(refresh) = &self.shared.refresh else {
            return Ok(());
        };
        let _running = refresh.running.lock().await;
        self.refresh_locked(refresh).await
    }

    async fn refresh_locked(&self, refresh: &Refresh) -> Result<()> {
        let outcome = read(refresh.source.as_ref()).await;
        let next = match &outcome {
            Ok(set) => {
                let changed = self.current().as_ref() != set;
                let gateways = set.keys.len();
                *self
                    .shared
                    .current
                    .write()
                    .unwrap_or_else(|e| e.into_inner()) = Arc::new(set.clone());
                tracing::info!(
                    source = %refresh.source.describe(),
                    gateways,
                    changed,
                    "gateway keys refreshed"
                );
                refresh.interval
            }
            Err(error) => {
                tracing::warn!(
                    source = %refresh.source.describe(),
                    error = %error,
                    "gateway key refresh failed; keeping the last good keys"
                );
                refresh.interval.min(RETRY_AFTER_FAILURE)
            }
        };
        *refresh.next_due.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now() + next;
        outcome.map(drop)
    }
}

/// One read of `source`, parsed; keys that name no gateway are an error.
async fn read(source: &dyn KeySource) -> Result<KeySet> {
    let describe = || source.describe();
    let text = source
        .fetch()
        .await
        .map_err(|error| config(format!("gateway keys from {}: {error}", describe())))?;
    let set = KeySet::parse(&text).map_err(|error| match error {
        IntakeError::Config(problem) => config(format!("{}: {problem}", describe())),
        other => other,
    })?;
    if set.is_empty() {
        return Err(config(format!("{} names no gateway", describe())));
    }
    Ok(set)
}

#[cfg(test)]
mod tests;
