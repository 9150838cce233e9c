//! Hierarchical partition UIDs.
//!
//! A UID is a `/`-separated path of segments, most significant first:
//! `gm_event/district/scene/slot` for narrative, `realm/zone/cell` for ecology,
//! `region/station` for the market. A prefix of a UID names the partition that owns the state
//! (the table partition key and the FIFO message group), so any worker can route a message
//! without shared memory. Validation happens once, at intake; inside the fleet a
//! [`PartitionUid`] is always valid.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{DomainError, Result};

/// The longest UID accepted, in bytes (also the SQS `MessageGroupId` limit).
pub const MAX_UID_BYTES: usize = 128;
/// The deepest hierarchy accepted.
pub const MAX_UID_DEPTH: usize = 6;

/// A validated hierarchical partition UID such as `gm-0007/district-03/scene-12`.
///
/// Segments are 1–32 bytes of `[A-Za-z0-9._:-]`; the whole UID is at most
/// [`MAX_UID_BYTES`] long and at most [`MAX_UID_DEPTH`] segments deep.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PartitionUid(String);

impl PartitionUid {
    /// Validates `raw` as a UID.
    pub fn parse(raw: &str) -> Result<Self> {
        let invalid = |reason| DomainError::InvalidUid {
            uid: truncate_for_error(raw),
            reason,
        };
        if raw.is_empty() {
            return Err(invalid("empty"));
        }
        if raw.len() > MAX_UID_BYTES {
            return Err(invalid("longer than 128 bytes"));
        }
        let mut depth = 0;
        for segment in raw.split('/') {
            depth += 1;
            if segment.is_empty() {
                return Err(invalid("empty segment"));
            }
            if segment.len() > 32 {
                return Err(invalid("segment longer than 32 bytes"));
            }
            if !segment.bytes().all(is_uid_byte) {
                return Err(invalid("segment has a character outside [A-Za-z0-9._:-]"));
            }
        }
        if depth > MAX_UID_DEPTH {
            return Err(invalid("deeper than 6 segments"));
        }
        Ok(Self(raw.to_owned()))
    }

    /// Validates `raw` and requires a depth within `min..=max`.
    pub fn parse_with_depth(raw: &str, min: usize, max: usize) -> Result<Self> {
        let uid = Self::parse(raw)?;
        let depth = uid.depth();
        if depth < min || depth > max {
            return Err(DomainError::InvalidUid {
                uid: truncate_for_error(raw),
                reason: "wrong depth for this kind of partition",
            });
        }
        Ok(uid)
    }

    /// Joins a child segment, validating the result.
    pub fn child(&self, segment: &str) -> Result<Self> {
        Self::parse(&format!("{}/{}", self.0, segment))
    }

    /// The UID as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Number of segments.
    pub fn depth(&self) -> usize {
        self.0.split('/').count()
    }

    /// The segments, most significant first.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }

    /// The ancestor made of the first `depth` segments (the UID itself when it is shallower).
    pub fn prefix(&self, depth: usize) -> PartitionUid {
        let end = self
            .0
            .match_indices('/')
            .nth(depth.saturating_sub(1))
            .map_or(self.0.len(), |(index, _)| index);
        PartitionUid(self.0[..end].to_owned())
    }

    /// True when `self` is `other` or one of its ancestors.
    pub fn is_prefix_of(&self, other: &PartitionUid) -> bool {
        other.0 == self.0
            || (other.0.starts_with(&self.0) && other.0.as_bytes()[self.0.len()] == b'/')
    }
}

fn is_uid_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b':' | b'-')
}

fn truncate_for_error(raw: &str) -> String {
    raw.chars().take(MAX_UID_BYTES + 8).collect()
}

impl fmt::Display for PartitionUid {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}

impl fmt::Debug for PartitionUid {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "PartitionUid({})", self.0)
    }
}

impl std::str::FromStr for PartitionUid {
    type Err = DomainError;
    fn from_str(raw: &str) -> Result<Self> {
        Self::parse(raw)
    }
}

impl Serialize for PartitionUid {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for PartitionUid {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        Self::parse(&raw).map_err(serde::de::Error::custom)
    }
}

/// Validates a player or gateway identifier: same charset as a UID segment, 1–64 bytes.
pub fn validate_identifier(field: &'static str, raw: &str) -> Result<()> {
    if raw.is_empty() || raw.len() > 64 || !raw.bytes().all(is_uid_byte) {
        return Err(DomainError::InvalidField {
            field,
            reason: "must be 1-64 characters of [A-Za-z0-9._:-]".to_owned(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_hierarchical_uids_and_exposes_prefixes() {
        let uid = PartitionUid::parse("gm-7/district-3/scene-12/slot-1").unwrap();
        assert_eq!(uid.depth(), 4);
        assert_eq!(uid.prefix(2).as_str(), "gm-7/district-3");
        assert_eq!(uid.prefix(9).as_str(), uid.as_str());
        assert!(uid.prefix(3).is_prefix_of(&uid));
        assert!(
            !PartitionUid::parse("gm-7/district-30")
                .unwrap()
                .is_prefix_of(&uid)
        );
        assert_eq!(uid.segments().last(), Some("slot-1"));
    }

    #[test]
    fn refuses_bad_uids_with_a_reason() {
        for bad in [
            "",
            "a//b",
            "/a",
            "a/",
            "a b",
            "a/é",
            "a/b/c/d/e/f/g",
            &"x".repeat(129),
        ] {
            let error = PartitionUid::parse(bad).unwrap_err();
            assert!(matches!(error, DomainError::InvalidUid { .. }), "{bad:?}");
        }
        assert!(PartitionUid::parse_with_depth("a/b", 3, 4).is_err());
    }

    #[test]
    fn deserialisation_validates() {
        let ok: PartitionUid = serde_json::from_str("\"realm/zone/cell-1\"").unwrap();
        assert_eq!(ok.depth(), 3);
        assert!(serde_json::from_str::<PartitionUid>("\"bad uid\"").is_err());
    }
}
