//! The rules classifier: keyword and structure rules, deterministic and instant.

use worldfleet_domain::envelope::{CombatOutcome, QuestStatus};
use worldfleet_domain::{AcceptedEvent, Classification, EventPayload, Intent, Tier};

/// The classifier's name as recorded in decisions.
pub const CLASSIFIER: &str = "rules";

const GREETING: &[&str] = &[
    "hello",
    "hail",
    "greetings",
    "well met",
    "good morning",
    "good evening",
    "welcome",
    "hi ",
];
const THREAT: &[&str] = &[
    "kill", "die", "destroy", "blood", "threat", "burn", "or else", "regret", "crush",
];
const TRADE: &[&str] = &[
    "buy", "sell", "trade", "gold", "price", "coin", "barter", "offer", "wares",
];
const LORE: &[&str] = &[
    "legend",
    "ancient",
    "history",
    "prophecy",
    "old gods",
    "ruins",
    "once upon",
    "forgotten",
];
const QUESTION_WORDS: &[&str] = &["who", "what", "where", "when", "why", "how"];

/// Salience at or above which the deep model composes.
pub const DEEP_THRESHOLD: u8 = 80;
/// Salience at or above which the driver model composes.
pub const DRIVER_THRESHOLD: u8 = 50;

/// Classifies `event` by rules.
pub fn classify(event: &AcceptedEvent) -> Classification {
    let intent = match &event.payload {
        EventPayload::Dialogue(dialogue) => text_intent(&dialogue.text).unwrap_or(Intent::Social),
        EventPayload::Action(action) => structural_intent(event).unwrap_or_else(|| {
            action
                .text
                .as_deref()
                .and_then(text_intent)
                .unwrap_or(Intent::Social)
        }),
        // World kinds are routed to the market and the ecology, not here; should one arrive,
        // it is background trade or wildlife business.
        EventPayload::Combat(_)
        | EventPayload::Quest(_)
        | EventPayload::Trade(_)
        | EventPayload::Capture(_)
        | EventPayload::Breed(_) => structural_intent(event).unwrap_or(Intent::Social),
    };
    decide(event, intent, CLASSIFIER)
}

/// The intent the event's structure decides without reading its text: combat is a fight,
/// quests progress, and well-known action verbs mean what they say. `None` when only the text
/// can tell (dialogue, or an action with an unknown verb).
pub fn structural_intent(event: &AcceptedEvent) -> Option<Intent> {
    match &event.payload {
        EventPayload::Dialogue(_) => None,
        EventPayload::Action(action) => match action.verb.to_lowercase().as_str() {
            "attack" | "strike" | "duel" => Some(Intent::Fight),
            "buy" | "sell" | "trade" | "haggle" => Some(Intent::Trade),
            "greet" | "wave" | "bow" | "salute" => Some(Intent::Greeting),
            "read" | "study" | "inspect" | "decipher" => Some(Intent::Lore),
            _ => None,
        },
        EventPayload::Combat(_) => Some(Intent::Fight),
        EventPayload::Quest(_) => Some(Intent::QuestProgress),
        EventPayload::Trade(_) => Some(Intent::Trade),
        EventPayload::Capture(_) | EventPayload::Breed(_) => Some(Intent::Other),
    }
}

/// The full decision for `event` once its intent is known: salience from kind, outcome,
/// intent and audience size, and the tier that salience earns. Both classifiers decide
/// salience and tier this way, so they differ only in how they read intent.
pub fn decide(event: &AcceptedEvent, intent: Intent, classifier: &str) -> Classification {
    let salience = salience(event, intent);
    Classification {
        intent,
        salience,
        tier: tier_for(salience),
        classifier: classifier.to_owned(),
    }
}

/// Salience 0–100 of `event` read as `intent`.
pub fn salience(event: &AcceptedEvent, intent: Intent) -> u8 {
    let base = match &event.payload {
        EventPayload::Dialogue(dialogue) => 20 + (dialogue.text.len() / 40).min(15) as u8,
        EventPayload::Action(_) => 25,
        EventPayload::Combat(combat) => match combat.outcome {
            CombatOutcome::Defeat => 85,
            CombatOutcome::Hit => 40 + (combat.damage.unwrap_or(0) / 10).min(20) as u8,
            CombatOutcome::Flee => 35,
            CombatOutcome::Miss => 20,
        },
        EventPayload::Quest(quest) => match quest.status {
            QuestStatus::Completed => 90,
            QuestStatus::Failed => 70,
            QuestStatus::Started => 55,
            QuestStatus::Advanced => 40,
        },
        EventPayload::Trade(_) | EventPayload::Capture(_) | EventPayload::Breed(_) => 15,
    };
    let intent_bonus = match intent {
        Intent::Threat => 25,
        Intent::Lore => 15,
        Intent::Trade | Intent::Question => 5,
        _ => 0,
    };
    let audience_bonus = (event.audience().len().min(8) * 2) as u8;
    base.saturating_add(intent_bonus)
        .saturating_add(audience_bonus)
        .min(100)
}

/// The tier that composes an event of `salience`.
pub fn tier_for(salience: u8) -> Tier {
    if salience >= DEEP_THRESHOLD {
        Tier::Deep
    } else if salience >= DRIVER_THRESHOLD {
        Tier::Driver
    } else {
        Tier::Template
    }
}

/// The intent keywords and sentence shape give `text`, if any.
pub fn text_intent(text: &str) -> Option<Intent> {
    let lower = format!("{} ", text.to_lowercase());
    let has = |words: &[&str]| words.iter().any(|word| lower.contains(word));
    if has(THREAT) {
        Some(Intent::Threat)
    } else if has(TRADE) {
        Some(Intent::Trade)
    } else if has(LORE) {
        Some(Intent::Lore)
    } else if has(GREETING) {
        Some(Intent::Greeting)
    } else if lower.trim_end().ends_with('?')
        || QUESTION_WORDS
            .iter()
            .any(|word| lower.starts_with(&format!("{word} ")))
    {
        Some(Intent::Question)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use worldfleet_domain::envelope::{CombatPayload, DialoguePayload, QuestPayload};
    use worldfleet_domain::{EventKind, PartitionUid};

    use super::*;

    fn event(payload: EventPayload) -> AcceptedEvent {
        AcceptedEvent {
            event_id: "01JD3Q7Z8X9Y0A1B2C3D4E5F6G".into(),
            gateway: "gw".into(),
            partition: PartitionUid::parse("g/d/s").unwrap(),
            kind: payload.kind(),
            actor: "p-1".into(),
            participants: vec![],
            faction: None,
            payload,
            sent_at_ms: 0,
            accepted_at_ms: 0,
        }
    }

    fn say(text: &str) -> Classification {
        classify(&event(EventPayload::Dialogue(DialoguePayload {
            text: text.into(),
            to: None,
        })))
    }

    #[test]
    fn dialogue_intents() {
        assert_eq!(say("Hail, stranger").intent, Intent::Greeting);
        assert_eq!(say("Where is the old mill?").intent, Intent::Question);
        assert_eq!(
            say("Leave now or I will burn your farm").intent,
            Intent::Threat
        );
        assert_eq!(
            say("I would buy that sword for ten gold").intent,
            Intent::Trade
        );
        assert_eq!(
            say("The ruins hold an ancient prophecy").intent,
            Intent::Lore
        );
        assert_eq!(say("Nice weather").intent, Intent::Social);
    }

    #[test]
    fn salience_and_tiers_follow_stakes() {
        let defeat = classify(&event(EventPayload::Combat(CombatPayload {
            target: "wolf".into(),
            outcome: CombatOutcome::Defeat,
            damage: Some(30),
        })));
        assert_eq!(defeat.tier, Tier::Deep);
        let completed = classify(&event(EventPayload::Quest(QuestPayload {
            quest: "q".into(),
            step: 3,
            status: QuestStatus::Completed,
        })));
        assert!(completed.salience >= DEEP_THRESHOLD);
        assert_eq!(say("Nice weather").tier, Tier::Template);
        assert_eq!(
            event(EventPayload::Dialogue(DialoguePayload {
                text: "x".into(),
                to: None
            }))
            .kind,
            EventKind::Dialogue
        );
    }

    #[test]
    fn deterministic() {
        assert_eq!(say("Hail, stranger"), say("Hail, stranger"));
    }
}
