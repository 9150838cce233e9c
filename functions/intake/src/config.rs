//! intake's configuration, read once per process from the environment.

use std::time::Duration;

use worldfleet_kit::{Env, Variable};

use crate::error::{IntakeError, Result};
pub use crate::keys::GatewayKeys;

/// The keys variable: the keys themselves (text or JSON, see [`crate::keys::KeySet::parse`]).
pub const KEYS_VARIABLE: &str = "WORLDFLEET_GATEWAY_KEYS";
/// The secret variable: a Secrets Manager secret holding the keys (AWS modes).
pub const SECRET_VARIABLE: &str = "WORLDFLEET_GATEWAY_KEYS_SECRET_ARN";
/// How often keys from the secret are read again.
pub const REFRESH_VARIABLE: &str = "WORLDFLEET_GATEWAY_KEYS_REFRESH_SECS";
/// Default of [`REFRESH_VARIABLE`].
pub const DEFAULT_KEYS_REFRESH: Duration = Duration::from_secs(300);

/// Keys still to be loaded from a Secrets Manager secret: the AWS run modes load them
/// (`worldfleet_lambda::load_gateway_keys`) and replace [`IntakeConfig::gateways`] with a
/// refreshing set before intake is built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySecret {
    /// The secret's ARN (or name).
    pub id: String,
    /// How often the secret is read again.
    pub refresh: Duration,
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
    /// Set when the keys come from a secret that is not loaded yet (`gateways` is then empty);
    /// intake cannot be built until an AWS mode has loaded it.
    pub key_secret: Option<KeySecret>,
    /// Accepted distance between `sent_at_ms` and intake's clock.
    pub clock_window: Duration,
    pub rate_limit: RateLimit,
}

impl IntakeConfig {
    /// Defaults (±300 s window, 60 burst / 20 per second) with the given keys.
    pub fn new(gateways: GatewayKeys) -> Self {
        Self {
            gateways,
            key_secret: None,
            clock_window: worldfleet_domain::envelope::DEFAULT_CLOCK_WINDOW,
            rate_limit: RateLimit::default(),
        }
    }

    /// Reads [`VARIABLES`] from the process environment.
    pub fn from_env() -> Result<Self> {
        Self::from_vars(&Env::process())
    }

    /// Reads [`VARIABLES`] from `env`: the keys from `WORLDFLEET_GATEWAY_KEYS`, or the secret
    /// that holds them from `WORLDFLEET_GATEWAY_KEYS_SECRET_ARN` (one of the two is required).
    pub fn from_vars(env: &Env) -> Result<Self> {
        let config_error =
            |error: worldfleet_kit::ConfigError| IntakeError::Config(error.to_string());
        let refresh = env
            .whole_number(REFRESH_VARIABLE)
            .map_err(config_error)?
            .map_or(DEFAULT_KEYS_REFRESH, Duration::from_secs);
        let mut config = match (env.text(KEYS_VARIABLE), env.text(SECRET_VARIABLE)) {
            (Some(_), Some(_)) => {
                return Err(IntakeError::Config(format!(
                    "{KEYS_VARIABLE} and {SECRET_VARIABLE} are both set; set one"
                )));
            }
            (None, None) => {
                return Err(IntakeError::Config(format!(
                    "{KEYS_VARIABLE} is not set (GATEWAY=HEXKEY,…), nor {SECRET_VARIABLE}"
                )));
            }
            (Some(keys), None) => {
                let gateways = GatewayKeys::parse(&keys).map_err(|error| match error {
                    IntakeError::Config(problem) => {
                        IntakeError::Config(format!("{KEYS_VARIABLE}: {problem}"))
                    }
                    other => other,
                })?;
                if gateways.is_empty() {
                    return Err(IntakeError::Config(format!(
                        "{KEYS_VARIABLE} names no gateway"
                    )));
                }
                Self::new(gateways)
            }
            (None, Some(id)) => {
                let mut config = Self::new(GatewayKeys::default());
                config.key_secret = Some(KeySecret { id, refresh });
                config
            }
        };
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
        default: "this or the secret, required by intake",
        meaning: "per-gateway HMAC keys, `GATEWAY=HEXKEY,…` or JSON `{\"GATEWAY\": \"HEXKEY\"}`; during a rotation a gateway has two active keys, `GATEWAY=NEWHEX\\|OLDHEX` or `[\"NEWHEX\", \"OLDHEX\"]` (keys of 16 bytes or more)",
    },
    Variable {
        name: "WORLDFLEET_GATEWAY_KEYS_SECRET_ARN",
        default: "unset: the keys above",
        meaning: "AWS modes: ARN (or name) of a Secrets Manager secret whose string value is the keys, in either form; read at start-up and again every `WORLDFLEET_GATEWAY_KEYS_REFRESH_SECS`",
    },
    Variable {
        name: "WORLDFLEET_GATEWAY_KEYS_REFRESH_SECS",
        default: "300",
        meaning: "how often keys from the secret are read again; a failed read keeps the last good keys",
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
        assert_eq!(keys.keys_of("gw-1").len(), 1);
        assert_eq!(keys.keys_of("gw-1")[0].as_bytes().len(), 16);
        assert!(keys.keys_of("gw-3").is_empty());
        assert!(GatewayKeys::parse("gw-1").is_err());
        assert!(GatewayKeys::parse("gw-1=zz").is_err());
        assert!(GatewayKeys::parse("gw-1=0011").is_err());
        assert!(!format!("{keys:?}").contains("0011"));
    }
}

#[cfg(test)]
mod secret_tests {
    use super::*;

    fn with_env<T>(pairs: &[(&str, &str)], read: impl FnOnce(&Env) -> T) -> T {
        let lookup = |name: &str| {
            pairs
                .iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| (*value).to_owned())
        };
        read(&Env::from_lookup(&lookup))
    }

    fn read_config(pairs: &[(&str, &str)]) -> Result<IntakeConfig> {
        with_env(pairs, IntakeConfig::from_vars)
    }

    #[test]
    fn keys_come_from_the_variable_or_a_secret_but_not_both() {
        let config = read_config(&[(
            SECRET_VARIABLE,
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:keys-AbCdEf",
        )])
        .unwrap();
        assert!(config.gateways.is_empty());
        assert_eq!(
            config.key_secret,
            Some(KeySecret {
                id: "arn:aws:secretsmanager:us-east-1:123456789012:secret:keys-AbCdEf".into(),
                refresh: DEFAULT_KEYS_REFRESH,
            })
        );
        let config = read_config(&[(SECRET_VARIABLE, "keys"), (REFRESH_VARIABLE, "60")]).unwrap();
        assert_eq!(
            config.key_secret.map(|secret| secret.refresh),
            Some(Duration::from_secs(60))
        );
        let both = read_config(&[
            (SECRET_VARIABLE, "keys"),
            (KEYS_VARIABLE, "gw-1=00112233445566778899aabbccddeeff"),
        ])
        .unwrap_err();
        assert!(both.to_string().contains("both set"), "{both}");
        let neither = read_config(&[]).unwrap_err();
        assert!(neither.to_string().contains(KEYS_VARIABLE), "{neither}");
        let config = read_config(&[(
            KEYS_VARIABLE,
            "gw-1=00112233445566778899aabbccddeeff|ffeeddccbbaa99887766554433221100",
        )])
        .unwrap();
        assert_eq!(config.gateways.keys_of("gw-1").len(), 2);
        assert!(config.key_secret.is_none());
    }

    #[test]
    fn a_bad_key_variable_is_named_without_its_value() {
        let error = read_config(&[(KEYS_VARIABLE, "gw-1=00112233445566778899aabbccddeeff|0011")])
            .unwrap_err()
            .to_string();
        assert!(error.contains(KEYS_VARIABLE), "{error}");
        assert!(!error.contains("00112233"), "{error}");
    }
}
