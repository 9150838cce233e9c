//! The work prune is given: one message per partition whose garbage may be collected.
//!
//! Every request names the partition that owns the state it touches (its FIFO message group),
//! and every request is safe to deliver twice: prune re-reads the state and decides again.

use serde::{Deserialize, Serialize};

use crate::feed::FeedId;
use crate::uid::PartitionUid;

/// Why prune is asked to look at a partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "prune", rename_all = "snake_case")]
pub enum PruneRequest {
    /// These events were published to every feed: their per-event bookkeeping (the
    /// publication plan) ends with them.
    EventsPublished {
        /// The distribute plan that published them.
        plan_id: String,
        /// `(partition, event id)` of each event.
        events: Vec<(PartitionUid, String)>,
    },
    /// A feed may hold pages past retention.
    FeedPastRetention { feed: String },
    /// A player's observations may be over the memory cap.
    MemoryOverBudget { player: String },
    /// A region may have been idle long enough to be tombstoned.
    RegionIdle { region: PartitionUid },
    /// A tombstoned region saw activity: bring its archived state back.
    RegionActive { region: PartitionUid },
}

impl PruneRequest {
    /// The FIFO message group: the partition that owns the state the request touches.
    pub fn group(&self) -> String {
        match self {
            Self::EventsPublished { plan_id, events } => events.first().map_or_else(
                || format!("plan#{plan_id}"),
                |(partition, _)| partition.to_string(),
            ),
            Self::FeedPastRetention { feed } => feed.clone(),
            Self::MemoryOverBudget { player } => FeedId::Player(player.clone()).to_string(),
            Self::RegionIdle { region } | Self::RegionActive { region } => region.to_string(),
        }
    }

    /// A deduplication id: equal requests within the queue's window collapse into one.
    pub fn dedup_id(&self) -> String {
        use sha2::Digest;
        let body = serde_json::to_vec(self).unwrap_or_default();
        hex::encode(&sha2::Sha256::digest(&body)[..16])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_and_group_by_partition() {
        let region = PartitionUid::parse("gm-1/district-2").unwrap();
        let requests = [
            PruneRequest::EventsPublished {
                plan_id: "p".into(),
                events: vec![(
                    PartitionUid::parse("gm-1/district-2/s").unwrap(),
                    "e".into(),
                )],
            },
            PruneRequest::FeedPastRetention {
                feed: "player:a".into(),
            },
            PruneRequest::MemoryOverBudget { player: "a".into() },
            PruneRequest::RegionIdle {
                region: region.clone(),
            },
        ];
        let groups: Vec<String> = requests.iter().map(PruneRequest::group).collect();
        assert_eq!(
            groups,
            [
                "gm-1/district-2/s",
                "player:a",
                "player:a",
                "gm-1/district-2"
            ]
        );
        for request in requests {
            let json = serde_json::to_string(&request).unwrap();
            assert_eq!(
                serde_json::from_str::<PruneRequest>(&json).unwrap(),
                request
            );
            assert_eq!(request.dedup_id().len(), 32);
        }
        assert!(serde_json::from_str::<PruneRequest>(r#"{"prune":"nope"}"#).is_err());
    }
}
