//! `rules`: the republish rules parser (`RepublishRules::parse`, TOML), which reads an
//! operator's file.
//!
//! Properties: parsing never panics; accepted rules are non-empty with salience thresholds of
//! 0–100; the feeds they pick for a canon entry have no repeats, and a louder entry reaches
//! every feed a quieter one reaches.

use worldfleet_distribute::rules::RepublishRules;
use worldfleet_domain::{CanonEntry, EventKind, Intent, PartitionUid, Tier};

fn canon(kind: EventKind, salience: u8, faction: Option<&str>) -> CanonEntry {
    CanonEntry {
        event_id: "01JD3Q7Z8X9Y0A1B2C3D4E5F6G".into(),
        partition: PartitionUid::parse("gm-1/district-2/scene-3").expect("a valid UID"),
        kind,
        actor: "p-1".into(),
        audience: vec!["p-1".into(), "p-2".into()],
        faction: faction.map(str::to_owned),
        intent: Intent::Fight,
        salience,
        tier: Tier::Template,
        text: "t".into(),
        composer: "template".into(),
        accepted_at_ms: 0,
        composed_at_ms: 0,
    }
}

/// Parses `data` (as UTF-8) as republish rules and checks the properties above.
pub fn rules(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(rules) = RepublishRules::parse(text) else {
        return;
    };
    assert!(!rules.rules.is_empty());
    assert!(rules.rules.iter().all(|rule| rule.min_salience <= 100));
    for kind in EventKind::ALL {
        for faction in [None, Some("red")] {
            let quiet = rules.targets(&canon(kind, 0, faction));
            let loud = rules.targets(&canon(kind, 100, faction));
            for feeds in [&quiet, &loud] {
                for (index, feed) in feeds.iter().enumerate() {
                    assert!(!feeds[..index].contains(feed), "{feed} picked twice");
                }
            }
            assert!(quiet.iter().all(|feed| loud.contains(feed)));
        }
    }
}
