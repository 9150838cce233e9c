//! The crate's error type: start-up, settings and template failures.
//!
//! Port operations return the port's own [`worldfleet_ports::Error`]; this enum wraps it for
//! the crate's other entry points (settings, template parsing, local deployment).

use std::path::PathBuf;

use thiserror::Error;

/// Something outside a port operation failed.
#[derive(Debug, Error)]
pub enum AwsError {
    /// A queue or table operation failed.
    #[error(transparent)]
    Port(#[from] worldfleet_ports::Error),
    /// An environment setting has a value that cannot be used.
    #[error("setting {name}: {reason}")]
    Setting { name: String, reason: String },
    /// The template file could not be read.
    #[error("cannot read template {path}: {source}")]
    TemplateIo {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The template is not YAML.
    #[error("template is not valid YAML: {0}")]
    TemplateYaml(#[from] serde_yaml::Error),
    /// The template is YAML but not a shape this crate understands.
    #[error("template: {0}")]
    Template(String),
}

/// Result alias for this crate's non-port entry points.
pub type Result<T, E = AwsError> = std::result::Result<T, E>;
