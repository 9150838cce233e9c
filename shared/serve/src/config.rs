//! The server's settings: bind address and every limit, read once from `WORLDFLEET_SERVE_*`.
//!
//! [`ServeConfig::from_lookup`] takes the lookup as a function so tests and the CLI can feed it
//! from anywhere (flags, a map); [`ServeConfig::from_env`] reads the process environment. The
//! gateway keys are not part of this struct: they are intake's (`WORLDFLEET_GATEWAY_KEYS`,
//! [`gateway_keys_from_lookup`]), so the door and intake always trust the same gateways.

use std::net::SocketAddr;
use std::time::Duration;

use worldfleet_intake::GatewayKeys;

use crate::error::{Result, ServeError};

/// The variable holding the bind address.
pub const BIND_VARIABLE: &str = "WORLDFLEET_SERVE_BIND";
/// The variable holding the gateway keys (shared with intake).
pub const GATEWAY_KEYS_VARIABLE: &str = "WORLDFLEET_GATEWAY_KEYS";

/// Settings of `worldfleet serve`. Every field has a default and a `WORLDFLEET_SERVE_*`
/// variable (named on the field).
#[derive(Debug, Clone, PartialEq)]
pub struct ServeConfig {
    /// Where to listen (`WORLDFLEET_SERVE_BIND`, default `127.0.0.1:8080`: loopback only).
    pub bind: SocketAddr,
    /// Largest request body in bytes; larger ones get 413 (`WORLDFLEET_SERVE_MAX_BODY_BYTES`,
    /// default 8 MiB: room for 100 envelopes of 64 KiB).
    pub max_body_bytes: usize,
    /// Most envelopes in one `POST /v1/events` (`WORLDFLEET_SERVE_MAX_ENVELOPES`, default 100).
    pub max_envelopes: usize,
    /// Accepted distance between a request's `x-worldfleet-timestamp` and the server clock
    /// (`WORLDFLEET_SERVE_AUTH_WINDOW_SECS`, default 300).
    pub auth_window: Duration,
    /// Requests a gateway may make at once (`WORLDFLEET_SERVE_RATE_BURST`, default 500).
    pub rate_burst: u32,
    /// Sustained requests per second per gateway (`WORLDFLEET_SERVE_RATE_PER_SECOND`,
    /// default 200; 0 turns the limit off).
    pub rate_per_second: u32,
    /// Concurrent live subscriptions; beyond it a new one gets 503
    /// (`WORLDFLEET_SERVE_MAX_SUBSCRIBERS`, default 5,000).
    pub max_subscribers: usize,
    /// Entries buffered per subscriber (`WORLDFLEET_SERVE_SUBSCRIBER_BUFFER`, default 256).
    pub subscriber_buffer: usize,
    /// How long a subscriber's full buffer may stay full before it is closed as behind
    /// (`WORLDFLEET_SERVE_SUBSCRIBER_STALL_MS`, default 2,000).
    pub subscriber_stall: Duration,
    /// First live poll interval, used again after every read that found entries
    /// (`WORLDFLEET_SERVE_POLL_MIN_MS`, default 50).
    pub poll_min: Duration,
    /// Longest live poll interval, reached by doubling while a feed is quiet
    /// (`WORLDFLEET_SERVE_POLL_MAX_MS`, default 1,000).
    pub poll_max: Duration,
    /// Entries per feed read when `limit` is not given (`WORLDFLEET_SERVE_FEED_LIMIT`, default
    /// 100).
    pub feed_limit: usize,
    /// Largest `limit` a feed read may ask for (`WORLDFLEET_SERVE_MAX_FEED_LIMIT`, default
    /// 1,000).
    pub max_feed_limit: usize,
    /// Interval of SSE keep-alive comments (`WORLDFLEET_SERVE_KEEP_ALIVE_SECS`, default 15).
    pub keep_alive: Duration,
    /// How long shutdown waits for in-flight requests and streams after telling streams to
    /// close (`WORLDFLEET_SERVE_SHUTDOWN_GRACE_SECS`, default 10).
    pub shutdown_grace: Duration,
    /// Open connections; a connection beyond it is answered 503 and closed at once
    /// (`WORLDFLEET_SERVE_MAX_CONNECTIONS`, default 10,000).
    pub max_connections: usize,
    /// Largest request head (request line and headers) in bytes; larger ones get 431
    /// (`WORLDFLEET_SERVE_MAX_HEADER_BYTES`, default 16 KiB).
    pub max_header_bytes: usize,
    /// Time a client has to send a request's head, counted from when the connection waits for
    /// one (idle keep-alive included); then the connection is closed
    /// (`WORLDFLEET_SERVE_HEADER_TIMEOUT_SECS`, default 10).
    pub header_timeout: Duration,
    /// A connection on which no byte moved either way for this long is closed (a stalled body
    /// upload, a dead peer); live streams stay busy with keep-alives and pings
    /// (`WORLDFLEET_SERVE_IDLE_TIMEOUT_SECS`, default 60).
    pub idle_timeout: Duration,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_body_bytes: 8 * 1024 * 1024,
            max_envelopes: 100,
            auth_window: Duration::from_secs(300),
            rate_burst: 500,
            rate_per_second: 200,
            max_subscribers: 5_000,
            subscriber_buffer: 256,
            subscriber_stall: Duration::from_millis(2_000),
            poll_min: Duration::from_millis(50),
            poll_max: Duration::from_millis(1_000),
            feed_limit: 100,
            max_feed_limit: 1_000,
            keep_alive: Duration::from_secs(15),
            shutdown_grace: Duration::from_secs(10),
            max_connections: 10_000,
            max_header_bytes: 16 * 1024,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

impl ServeConfig {
    /// Defaults overridden by whatever `lookup` returns for the documented variables; a value
    /// that does not parse is an error naming the variable.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let mut config = Self::default();
        if let Some(raw) = lookup(BIND_VARIABLE) {
            config.bind = raw.trim().parse().map_err(|_| {
                ServeError::Config(format!(
                    "{BIND_VARIABLE}={raw:?} is not an address like 127.0.0.1:8080"
                ))
            })?;
        }
        let number = |name: &str| -> Result<Option<u64>> {
            match lookup(name) {
                None => Ok(None),
                Some(raw) => raw.trim().parse().map(Some).map_err(|_| {
                    ServeError::Config(format!("{name}={raw:?} is not a whole number"))
                }),
            }
        };
        let positive = |name: &str| -> Result<Option<u64>> {
            match number(name)? {
                Some(0) => Err(ServeError::Config(format!("{name} must be at least 1"))),
                other => Ok(other),
            }
        };
        if let Some(value) = positive("WORLDFLEET_SERVE_MAX_BODY_BYTES")? {
            config.max_body_bytes = value as usize;
        }
        if let Some(value) = positive("WORLDFLEET_SERVE_MAX_ENVELOPES")? {
            config.max_envelopes = value as usize;
        }
        if let Some(value) = number("WORLDFLEET_SERVE_AUTH_WINDOW_SECS")? {
            config.auth_window = Duration::from_secs(value);
        }
        if let Some(value) = positive("WORLDFLEET_SERVE_RATE_BURST")? {
            config.rate_burst = u32::try_from(value).unwrap_or(u32::MAX);
        }
        if let Some(value) = number("WORLDFLEET_SERVE_RATE_PER_SECOND")? {
            config.rate_per_second = u32::try_from(value).unwrap_or(u32::MAX);
        }
        if let Some(value) = number("WORLDFLEET_SERVE_MAX_SUBSCRIBERS")? {
            config.max_subscribers = value as usize;
        }
        if let Some(value) = positive("WORLDFLEET_SERVE_SUBSCRIBER_BUFFER")? {
            config.subscriber_buffer = value as usize;
        }
        if let Some(value) = number("WORLDFLEET_SERVE_SUBSCRIBER_STALL_MS")? {
            config.subscriber_stall = Duration::from_millis(value);
        }
        if let Some(value) = positive("WORLDFLEET_SERVE_POLL_MIN_MS")? {
            config.poll_min = Duration::from_millis(value);
        }
        if let Some(value) = positive("WORLDFLEET_SERVE_POLL_MAX_MS")? {
            config.poll_max = Duration::from_millis(value);
        }
        if let Some(value) = positive("WORLDFLEET_SERVE_FEED_LIMIT")? {
            config.feed_limit = value as usize;
        }
        if let Some(value) = positive("WORLDFLEET_SERVE_MAX_FEED_LIMIT")? {
            config.max_feed_limit = value as usize;
        }
        if let Some(value) = positive("WORLDFLEET_SERVE_KEEP_ALIVE_SECS")? {
            config.keep_alive = Duration::from_secs(value);
        }
        if let Some(value) = number("WORLDFLEET_SERVE_SHUTDOWN_GRACE_SECS")? {
            config.shutdown_grace = Duration::from_secs(value);
        }
        if let Some(value) = positive("WORLDFLEET_SERVE_MAX_CONNECTIONS")? {
            config.max_connections = value as usize;
        }
        if let Some(value) = positive("WORLDFLEET_SERVE_MAX_HEADER_BYTES")? {
            config.max_header_bytes = value as usize;
        }
        if let Some(value) = positive("WORLDFLEET_SERVE_HEADER_TIMEOUT_SECS")? {
            config.header_timeout = Duration::from_secs(value);
        }
        if let Some(value) = positive("WORLDFLEET_SERVE_IDLE_TIMEOUT_SECS")? {
            config.idle_timeout = Duration::from_secs(value);
        }
        if config.idle_timeout <= config.keep_alive {
            return Err(ServeError::Config(
                "WORLDFLEET_SERVE_IDLE_TIMEOUT_SECS must be above WORLDFLEET_SERVE_KEEP_ALIVE_SECS, \
                 or live streams would be closed between keep-alives"
                    .into(),
            ));
        }
        if config.poll_max < config.poll_min {
            return Err(ServeError::Config(
                "WORLDFLEET_SERVE_POLL_MAX_MS is below WORLDFLEET_SERVE_POLL_MIN_MS".into(),
            ));
        }
        if config.feed_limit > config.max_feed_limit {
            return Err(ServeError::Config(
                "WORLDFLEET_SERVE_FEED_LIMIT is above WORLDFLEET_SERVE_MAX_FEED_LIMIT".into(),
            ));
        }
        Ok(config)
    }

    /// [`ServeConfig::from_lookup`] over the process environment.
    pub fn from_env() -> Result<Self> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }
}

/// The gateway keys from `WORLDFLEET_GATEWAY_KEYS` (`gateway=hexkey,…`, the format intake
/// reads); an error when it is missing, unparsable or names no gateway. The error never
/// contains key material.
pub fn gateway_keys_from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<GatewayKeys> {
    let raw = lookup(GATEWAY_KEYS_VARIABLE).ok_or_else(|| {
        ServeError::Config(format!(
            "{GATEWAY_KEYS_VARIABLE} is not set (GATEWAY=HEXKEY,…)"
        ))
    })?;
    let keys = GatewayKeys::parse(&raw)
        .map_err(|error| ServeError::Config(format!("{GATEWAY_KEYS_VARIABLE}: {error}")))?;
    if keys.is_empty() {
        return Err(ServeError::Config(format!(
            "{GATEWAY_KEYS_VARIABLE} names no gateway"
        )));
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn defaults_listen_on_loopback() {
        let config = ServeConfig::from_lookup(lookup(&[])).unwrap();
        assert_eq!(config, ServeConfig::default());
        assert_eq!(config.bind.to_string(), "127.0.0.1:8080");
        assert_eq!(config.max_envelopes, 100);
    }

    #[test]
    fn reads_the_documented_variables() {
        let config = ServeConfig::from_lookup(lookup(&[
            ("WORLDFLEET_SERVE_BIND", "0.0.0.0:9000"),
            ("WORLDFLEET_SERVE_MAX_BODY_BYTES", "1024"),
            ("WORLDFLEET_SERVE_MAX_SUBSCRIBERS", "3"),
            ("WORLDFLEET_SERVE_POLL_MIN_MS", "10"),
            ("WORLDFLEET_SERVE_AUTH_WINDOW_SECS", "60"),
        ]))
        .unwrap();
        assert_eq!(config.bind.port(), 9000);
        assert_eq!(config.max_body_bytes, 1024);
        assert_eq!(config.max_subscribers, 3);
        assert_eq!(config.poll_min, Duration::from_millis(10));
        assert_eq!(config.auth_window, Duration::from_secs(60));
    }

    #[test]
    fn refuses_values_that_do_not_parse_and_names_the_variable() {
        let error = ServeConfig::from_lookup(lookup(&[("WORLDFLEET_SERVE_BIND", "nowhere")]))
            .unwrap_err()
            .to_string();
        assert!(error.contains("WORLDFLEET_SERVE_BIND"), "{error}");
        let error =
            ServeConfig::from_lookup(lookup(&[("WORLDFLEET_SERVE_SUBSCRIBER_BUFFER", "0")]))
                .unwrap_err()
                .to_string();
        assert!(error.contains("SUBSCRIBER_BUFFER"), "{error}");
        assert!(
            ServeConfig::from_lookup(lookup(&[("WORLDFLEET_SERVE_POLL_MAX_MS", "1")])).is_err()
        );
    }

    #[test]
    fn gateway_keys_come_from_intakes_variable_and_errors_hide_the_keys() {
        let keys = gateway_keys_from_lookup(lookup(&[(
            "WORLDFLEET_GATEWAY_KEYS",
            "gw-1=00112233445566778899aabbccddeeff",
        )]))
        .unwrap();
        assert!(!keys.keys_of("gw-1").is_empty());
        assert!(gateway_keys_from_lookup(lookup(&[])).is_err());
        let error =
            gateway_keys_from_lookup(lookup(&[("WORLDFLEET_GATEWAY_KEYS", "gw-1=0011223344")]))
                .unwrap_err()
                .to_string();
        assert!(!error.contains("0011223344"), "{error}");
    }
}
