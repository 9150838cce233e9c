//! `uid`: partition UIDs (`PartitionUid`), the identifiers validated beside them (gateway,
//! player, creature and event ids) and feed ids (`FeedId`), which embed a UID.
//!
//! Properties: nothing panics; an accepted UID is within its limits, prints as it was given,
//! and its prefixes and segments are consistent with it; an accepted feed id prints back to
//! the text it was parsed from.

use worldfleet_domain::envelope::{validate_creature_id, validate_event_id};
use worldfleet_domain::uid::{MAX_UID_BYTES, MAX_UID_DEPTH, validate_identifier};
use worldfleet_domain::{FeedId, PartitionUid};

/// Parses `data` (as UTF-8) as every kind of identifier and checks the properties above.
pub fn uid(data: &[u8]) {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    let _ = validate_identifier("fuzz", raw);
    let _ = validate_creature_id("fuzz", raw);
    let _ = validate_event_id(raw);
    if let Ok(feed) = FeedId::parse(raw) {
        assert_eq!(feed.to_string(), raw);
    }
    let parsed = PartitionUid::parse(raw);
    assert_eq!(
        parsed.is_ok(),
        raw.parse::<PartitionUid>().is_ok(),
        "FromStr disagrees with parse"
    );
    let Ok(uid) = parsed else { return };
    assert_eq!(uid.as_str(), raw);
    assert_eq!(uid.to_string(), raw);
    assert!(!raw.is_empty() && raw.len() <= MAX_UID_BYTES);
    let depth = uid.depth();
    assert!((1..=MAX_UID_DEPTH).contains(&depth));
    assert_eq!(uid.segments().count(), depth);
    assert_eq!(uid.segments().collect::<Vec<_>>().join("/"), raw);
    for prefix_depth in 1..=MAX_UID_DEPTH + 1 {
        let prefix = uid.prefix(prefix_depth);
        assert_eq!(prefix.depth(), prefix_depth.min(depth));
        assert!(prefix.is_prefix_of(&uid));
        assert_eq!(PartitionUid::parse(prefix.as_str()).as_ref(), Ok(&prefix));
    }
    assert!(PartitionUid::parse_with_depth(raw, depth, depth).is_ok());
    assert!(PartitionUid::parse_with_depth(raw, depth + 1, MAX_UID_DEPTH + 1).is_err());
    if let Ok(child) = uid.child("c") {
        assert_eq!(child.depth(), depth + 1);
        assert!(uid.is_prefix_of(&child) && !child.is_prefix_of(&uid));
    }
    let json = serde_json::to_string(&uid).expect("a UID serialises");
    assert_eq!(serde_json::from_str::<PartitionUid>(&json).ok(), Some(uid));
}
