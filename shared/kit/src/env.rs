//! One way to read configuration from environment variables.
//!
//! Every stage's settings struct reads its variables through an [`Env`]: the process
//! environment in production ([`Env::process`]), any lookup in tests ([`Env::from_lookup`]).
//! The helpers trim values, treat an empty value as unset, and turn a value that does not parse
//! into a [`ConfigError`] that names the variable, the value and what was expected, so a typo
//! never silently becomes a default.
//!
//! An `Env` can also record every variable it was asked for ([`Env::recording`]); the
//! configuration-table test uses that to check that the README documents exactly the variables
//! the code reads.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::Duration;

/// A variable that is set but cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The variable's name.
    pub variable: String,
    /// What is wrong, as a sentence fragment (`"\"soon\" is not a whole number"`).
    pub problem: String,
}

impl ConfigError {
    /// An error about `variable`.
    pub fn new(variable: &str, problem: impl Into<String>) -> Self {
        Self {
            variable: variable.to_owned(),
            problem: problem.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}: {}", self.variable, self.problem)
    }
}

impl std::error::Error for ConfigError {}

type Lookup<'a> = dyn Fn(&str) -> Option<String> + Send + Sync + 'a;

fn process_lookup(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// A source of configuration variables.
pub struct Env<'a> {
    lookup: &'a Lookup<'a>,
    read: Option<Mutex<BTreeSet<String>>>,
}

impl Env<'static> {
    /// The process environment.
    pub fn process() -> Self {
        Self {
            lookup: &process_lookup,
            read: None,
        }
    }
}

impl<'a> Env<'a> {
    /// Variables from `lookup` (tests, or a map built by a caller).
    pub fn from_lookup(lookup: &'a Lookup<'a>) -> Self {
        Self { lookup, read: None }
    }

    /// Like [`Env::from_lookup`], remembering every variable asked for ([`Env::variables_read`]).
    pub fn recording(lookup: &'a Lookup<'a>) -> Self {
        Self {
            lookup,
            read: Some(Mutex::new(BTreeSet::new())),
        }
    }

    /// The variables asked for so far (recording environments only; empty otherwise).
    pub fn variables_read(&self) -> BTreeSet<String> {
        self.read
            .as_ref()
            .map(|read| {
                read.lock()
                    .unwrap_or_else(|poison| poison.into_inner())
                    .clone()
            })
            .unwrap_or_default()
    }

    /// The trimmed value of `name`; `None` when unset or empty.
    pub fn text(&self, name: &str) -> Option<String> {
        if let Some(read) = &self.read {
            read.lock()
                .unwrap_or_else(|poison| poison.into_inner())
                .insert(name.to_owned());
        }
        (self.lookup)(name)
            .map(|value| value.trim().to_owned())
            .filter(|value| !value.is_empty())
    }

    /// `name` parsed as `T` (a number, usually); `None` when unset.
    pub fn parsed<T: FromStr>(&self, name: &str, expected: &str) -> Result<Option<T>, ConfigError> {
        match self.text(name) {
            None => Ok(None),
            Some(raw) => raw
                .parse()
                .map(Some)
                .map_err(|_| ConfigError::new(name, format!("{raw:?} is not {expected}"))),
        }
    }

    /// `name` as a whole number; `None` when unset.
    pub fn whole_number(&self, name: &str) -> Result<Option<u64>, ConfigError> {
        self.parsed(name, "a whole number")
    }

    /// `name` as a finite, non-negative number; `None` when unset.
    pub fn amount(&self, name: &str) -> Result<Option<f64>, ConfigError> {
        match self.parsed::<f64>(name, "a number")? {
            Some(value) if !value.is_finite() || value < 0.0 => Err(ConfigError::new(
                name,
                format!("{value} must be finite and not negative"),
            )),
            other => Ok(other),
        }
    }

    /// `name` as milliseconds; `None` when unset.
    pub fn millis(&self, name: &str) -> Result<Option<Duration>, ConfigError> {
        Ok(self
            .parsed::<u64>(name, "a whole number of milliseconds")?
            .map(Duration::from_millis))
    }

    /// `name` as whole days (`7`), or a whole number with a unit (`90s`, `10m`, `6h`, `7d`) for
    /// shorter spans (soak tests); `None` when unset.
    pub fn days(&self, name: &str) -> Result<Option<Duration>, ConfigError> {
        let Some(raw) = self.text(name) else {
            return Ok(None);
        };
        let (number, unit_secs) = match raw.char_indices().last() {
            Some((at, 's')) => (&raw[..at], 1),
            Some((at, 'm')) => (&raw[..at], 60),
            Some((at, 'h')) => (&raw[..at], 3_600),
            Some((at, 'd')) => (&raw[..at], 86_400),
            _ => (raw.as_str(), 86_400),
        };
        number
            .parse::<u64>()
            .ok()
            .and_then(|number| number.checked_mul(unit_secs))
            .map(|secs| Some(Duration::from_secs(secs)))
            .ok_or_else(|| {
                ConfigError::new(
                    name,
                    format!("{raw:?} is not a whole number of days (or of s, m, h with the unit)"),
                )
            })
    }

    /// `name` as a switch (`on`/`true`/`1`, `off`/`false`/`0`); `None` when unset.
    pub fn switch(&self, name: &str) -> Result<Option<bool>, ConfigError> {
        match self.text(name).as_deref() {
            None => Ok(None),
            Some("on" | "true" | "1") => Ok(Some(true)),
            Some("off" | "false" | "0") => Ok(Some(false)),
            Some(other) => Err(ConfigError::new(
                name,
                format!("{other:?} is not on or off"),
            )),
        }
    }
}

/// The log filter every binary uses (`EnvFilter` syntax): `WORLDFLEET_LOG`, else Lambda's
/// `AWS_LAMBDA_LOG_LEVEL` (lowercased; `FATAL` is `error`), else `RUST_LOG`, else `default`.
pub fn log_filter(env: &Env, default: &str) -> String {
    if let Some(filter) = env.text("WORLDFLEET_LOG") {
        return filter;
    }
    if let Some(level) = env.text("AWS_LAMBDA_LOG_LEVEL") {
        return match level.to_ascii_lowercase().as_str() {
            "fatal" => "error".to_owned(),
            other => other.to_owned(),
        };
    }
    env.text("RUST_LOG").unwrap_or_else(|| default.to_owned())
}

/// One documented configuration variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Variable {
    /// The variable's name.
    pub name: &'static str,
    /// The default, as a user reads it (`"300"`, `"unset: rules only"`).
    pub default: &'static str,
    /// What it does.
    pub meaning: &'static str,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(name: &str) -> Option<String> {
        match name {
            "COUNT" => Some(" 12 ".to_owned()),
            "EMPTY" => Some("  ".to_owned()),
            "WORD" => Some("soon".to_owned()),
            "SWITCH" => Some("off".to_owned()),
            "PRICE" => Some("-1".to_owned()),
            _ => None,
        }
    }

    #[test]
    fn days_take_a_unit_for_shorter_spans() {
        let units = |name: &str| match name {
            "PLAIN" => Some("7".to_owned()),
            "SECONDS" => Some("90s".to_owned()),
            "MINUTES" => Some("10m".to_owned()),
            "HOURS" => Some("6h".to_owned()),
            "DAYS" => Some("2d".to_owned()),
            "BAD" => Some("ten".to_owned()),
            "HUGE" => Some("99999999999999999d".to_owned()),
            _ => None,
        };
        let env = Env::from_lookup(&units);
        let days = |name: &str| env.days(name).unwrap().unwrap().as_secs();
        assert_eq!(days("PLAIN"), 7 * 86_400);
        assert_eq!(days("SECONDS"), 90);
        assert_eq!(days("MINUTES"), 600);
        assert_eq!(days("HOURS"), 6 * 3_600);
        assert_eq!(days("DAYS"), 2 * 86_400);
        assert_eq!(env.days("UNSET").unwrap(), None);
        assert!(env.days("BAD").is_err());
        assert!(
            env.days("HUGE").is_err(),
            "an overflow is an error, not a wrap"
        );
    }

    #[test]
    fn values_are_trimmed_and_empty_means_unset() {
        let env = Env::from_lookup(&lookup);
        assert_eq!(env.whole_number("COUNT").unwrap(), Some(12));
        assert_eq!(env.text("EMPTY"), None);
        assert_eq!(env.whole_number("MISSING").unwrap(), None);
        assert_eq!(env.switch("SWITCH").unwrap(), Some(false));
    }

    #[test]
    fn unusable_values_name_the_variable_and_the_value() {
        let env = Env::from_lookup(&lookup);
        let error = env.whole_number("WORD").unwrap_err();
        assert_eq!(error.to_string(), "WORD: \"soon\" is not a whole number");
        assert!(
            env.switch("WORD")
                .unwrap_err()
                .to_string()
                .contains("on or off")
        );
        assert!(
            env.amount("PRICE")
                .unwrap_err()
                .to_string()
                .contains("not negative")
        );
    }

    #[test]
    fn one_log_filter_variable_first_then_lambda_s_then_rust_log() {
        let all = |name: &str| match name {
            "WORLDFLEET_LOG" => Some("worldfleet=debug".to_owned()),
            "AWS_LAMBDA_LOG_LEVEL" => Some("FATAL".to_owned()),
            "RUST_LOG" => Some("trace".to_owned()),
            _ => None,
        };
        assert_eq!(
            log_filter(&Env::from_lookup(&all), "info"),
            "worldfleet=debug"
        );
        let lambda = |name: &str| match name {
            "AWS_LAMBDA_LOG_LEVEL" => Some("FATAL".to_owned()),
            "RUST_LOG" => Some("trace".to_owned()),
            _ => None,
        };
        assert_eq!(log_filter(&Env::from_lookup(&lambda), "info"), "error");
        let none = |_: &str| None;
        assert_eq!(log_filter(&Env::from_lookup(&none), "warn"), "warn");
    }

    #[test]
    fn a_recording_environment_lists_what_was_asked() {
        let env = Env::recording(&lookup);
        let _ = env.text("COUNT");
        let _ = env.millis("MISSING");
        let read: Vec<String> = env.variables_read().into_iter().collect();
        assert_eq!(read, ["COUNT", "MISSING"]);
    }
}
