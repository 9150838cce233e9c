//! intake's configuration, read once per process from the environment.

use std::collections::HashMap;
use std::time::Duration;

use worldfleet_kit::{Env, Variable};

use crate::error::{IntakeError, Result};

/// Per-gateway HMAC keys.
#[derive(Clone, Default)]
pub struct GatewayKeys {
    keys: HashMap<String, Vec<u8>>,
}

impl std::fmt::Debug for GatewayKeys {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        formatter
            .debug_struct("GatewayKeys")
            .field("gateways", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl GatewayKeys {
    /// Keys from `gateway=hexkey` pairs separated by commas, e.g. `gw-eu=00ff…,gw-us=a1b2…`.
    pub fn parse(spec: &str) -> Result<Self> {
        let mut keys = HashMap::new();
        for pair in spec
            .split(',')
            .map(str::trim)
            .filter(|pair| !pair.is_empty())
        {
            let (gateway, key) = pair.split_once('=').ok_or_else(|| {
                IntakeError::Config(format!(
                    "gateway key entry {gateway:?} is not GATEWAY=HEXKEY",
                    gateway = pair.split('=').next().unwrap_or("")
                ))
            })?;
            let key = hex::decode(key.trim()).map_err(|_| {
                IntakeError::Config(format!("key of gateway {gateway:?} is not hex"))
            })?;
            if key.len() < 16 {
                return Err(IntakeError::Config(format!(
                    "key of gateway {gateway:?} is shorter than 16 bytes"
                )));
            }
            keys.insert(gateway.trim().to_owned(), key);
        }
        Ok(Self { keys })
    }

    /// Adds or replaces one gateway's key.
    pub fn insert(&mut self, gateway: &str, key: Vec<u8>) {
        self.keys.insert(gateway.to_owned(), key);
    }

    /// The key of `gateway`, if configured.
    pub fn key(&self, gateway: &str) -> Option<&[u8]> {
        self.keys.get(gateway).map(Vec::as_slice)
    }

    /// True when no gateway is configured.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// A per-player token bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Burst size: events a player may send at once.
    pub burst: u32,
    /// Sustained events per second per player.
    pub per_second: u32,
}

impl Default for RateLimit {
    fn default() -> Self {
        Self {
            burst: 60,
            per_second: 20,
        }
    }
}

/// Everything intake needs besides its ports.
#[derive(Debug, Clone)]
pub struct IntakeConfig {
    pub gateways: GatewayKeys,
    /// Accepted distance between `sent_at_ms` and intake's clock.
    pub clock_window: Duration,
    pub rate_limit: RateLimit,
}

impl IntakeConfig {
    /// Defaults (±300 s window, 60 burst / 20 per second) with the given keys.
    pub fn new(gateways: GatewayKeys) -> Self {
        Self {
            gateways,
            clock_window: worldfleet_domain::envelope::DEFAULT_CLOCK_WINDOW,
            rate_limit: RateLimit::default(),
        }
    }

    /// Reads [`VARIABLES`] from the process environment.
    pub fn from_env() -> Result<Self> {
        Self::from_vars(&Env::process())
    }

    /// Reads [`VARIABLES`] from `env`; `WORLDFLEET_GATEWAY_KEYS` is required.
    pub fn from_vars(env: &Env) -> Result<Self> {
        let keys = env.text("WORLDFLEET_GATEWAY_KEYS").ok_or_else(|| {
            IntakeError::Config("WORLDFLEET_GATEWAY_KEYS is not set (GATEWAY=HEXKEY,…)".into())
        })?;
        let gateways = GatewayKeys::parse(&keys)?;
        if gateways.is_empty() {
            return Err(IntakeError::Config(
                "WORLDFLEET_GATEWAY_KEYS names no gateway".into(),
            ));
        }
        let config_error =
            |error: worldfleet_kit::ConfigError| IntakeError::Config(error.to_string());
        let mut config = Self::new(gateways);
        if let Some(secs) = env
            .whole_number("WORLDFLEET_CLOCK_WINDOW_SECS")
            .map_err(config_error)?
        {
            config.clock_window = Duration::from_secs(secs);
        }
        if let Some(burst) = env
            .parsed::<u32>("WORLDFLEET_RATE_BURST", "a whole number")
            .map_err(config_error)?
        {
            config.rate_limit.burst = burst;
        }
        if let Some(per_second) = env
            .parsed::<u32>("WORLDFLEET_RATE_PER_SECOND", "a whole number")
            .map_err(config_error)?
        {
            config.rate_limit.per_second = per_second;
        }
        Ok(config)
    }
}

/// The variables intake reads.
pub const VARIABLES: &[Variable] = &[
    Variable {
        name: "WORLDFLEET_GATEWAY_KEYS",
        default: "required by intake",
        meaning: "per-gateway HMAC keys, `GATEWAY=HEXKEY,…` (keys of 16 bytes or more)",
    },
    Variable {
        name: "WORLDFLEET_CLOCK_WINDOW_SECS",
        default: "300",
        meaning: "accepted distance between an envelope's `sent_at_ms` and intake's clock",
    },
    Variable {
        name: "WORLDFLEET_RATE_BURST",
        default: "60",
        meaning: "events a player may send at once",
    },
    Variable {
        name: "WORLDFLEET_RATE_PER_SECOND",
        default: "20",
        meaning: "sustained events per second per player",
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_gateway_keys_and_refuses_bad_ones() {
        let keys = GatewayKeys::parse(
            "gw-1=00112233445566778899aabbccddeeff, gw-2=ffeeddccbbaa99887766554433221100",
        )
        .unwrap();
        assert_eq!(keys.key("gw-1").map(<[u8]>::len), Some(16));
        assert!(keys.key("gw-3").is_none());
        assert!(GatewayKeys::parse("gw-1").is_err());
        assert!(GatewayKeys::parse("gw-1=zz").is_err());
        assert!(GatewayKeys::parse("gw-1=0011").is_err());
        assert!(!format!("{keys:?}").contains("0011"));
    }
}
