//! Feeds: per-player, per-faction and per-district streams of canon.
//!
//! A feed is a partition of the feeds table. Entries carry sequence numbers that only grow and
//! never repeat; gaps are allowed (a crash may burn a range). Distribute writes entries in
//! pages — one table item holding a contiguous run of sequence numbers for one batch — so a
//! batch of ten events costs each recipient one write, not ten.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::envelope::EventKind;
use crate::error::{DomainError, Result};
use crate::uid::{PartitionUid, validate_identifier};

/// Which feed: a player's, a faction's or a district's.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FeedId {
    Player(String),
    Faction(String),
    District(PartitionUid),
}

impl FeedId {
    /// Parses `player:ID`, `faction:NAME` or `district:UID`.
    pub fn parse(raw: &str) -> Result<Self> {
        let invalid = |reason: String| DomainError::InvalidFeed {
            feed: raw.to_owned(),
            reason,
        };
        let Some((scope, name)) = raw.split_once(':') else {
            return Err(invalid("no scope before a `:`".to_owned()));
        };
        let name_error = |error: DomainError| match error {
            DomainError::InvalidField { reason, .. } => invalid(format!("the {scope} {reason}")),
            DomainError::InvalidUid { reason, .. } => {
                invalid(format!("the district UID: {reason}"))
            }
            other => invalid(other.to_string()),
        };
        match scope {
            "player" => validate_identifier("feed", name)
                .map(|()| Self::Player(name.to_owned()))
                .map_err(name_error),
            "faction" => validate_identifier("feed", name)
                .map(|()| Self::Faction(name.to_owned()))
                .map_err(name_error),
            "district" => PartitionUid::parse(name)
                .map(Self::District)
                .map_err(name_error),
            _ => Err(invalid(format!("unknown scope {scope:?}"))),
        }
    }
}

impl fmt::Display for FeedId {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Player(id) => write!(formatter, "player:{id}"),
            Self::Faction(name) => write!(formatter, "faction:{name}"),
            Self::District(uid) => write!(formatter, "district:{uid}"),
        }
    }
}

/// One entry a reader sees.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeedEntry {
    pub seq: u64,
    pub event_id: String,
    pub partition: PartitionUid,
    pub kind: EventKind,
    pub actor: String,
    pub text: String,
    pub accepted_at_ms: u64,
}

/// A contiguous run of entries written as one item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeedPage {
    pub first_seq: u64,
    pub entries: Vec<FeedEntry>,
}

impl FeedPage {
    /// The last sequence number in the page.
    pub fn last_seq(&self) -> u64 {
        self.entries
            .last()
            .map_or(self.first_seq, |entry| entry.seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wrong_feed_name_is_called_a_feed_id_not_an_envelope_field() {
        for raw in [
            "p-1",
            "player:",
            "player:a b",
            "guild:x",
            "district:gm-1//x",
        ] {
            let message = FeedId::parse(raw).unwrap_err().to_string();
            assert!(message.contains("is not a feed id"), "{raw}: {message}");
            assert!(!message.contains("envelope"), "{raw}: {message}");
            assert!(
                message.contains("player:ID, faction:NAME"),
                "{raw}: {message}"
            );
        }
    }

    #[test]
    fn feed_ids_round_trip() {
        for raw in ["player:p-1", "faction:red", "district:gm-1/district-2"] {
            assert_eq!(FeedId::parse(raw).unwrap().to_string(), raw);
        }
        assert!(FeedId::parse("guild:x").is_err());
        assert!(FeedId::parse("player:bad id").is_err());
    }
}
