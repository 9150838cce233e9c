//! The template composer: deterministic narrative lines from an event and its classification.
//!
//! Player-written text is quoted, never interpreted: control characters are stripped and it
//! is cut to [`MAX_QUOTE_CHARS`].

use worldfleet_domain::envelope::{CombatOutcome, QuestStatus};
use worldfleet_domain::{ComposeRequest, EventPayload, Intent};

/// Composer name recorded on canon written by templates.
pub const COMPOSER: &str = "template";
/// Longest quote of player text in a narrative line.
pub const MAX_QUOTE_CHARS: usize = 280;

/// Renders the narrative line for `request`.
pub fn render(request: &ComposeRequest) -> String {
    let event = &request.event;
    let actor = &event.actor;
    let place = place(event.partition.as_str());
    match &event.payload {
        EventPayload::Dialogue(dialogue) => {
            let quote = quote(&dialogue.text);
            let listener = dialogue.to.as_deref().unwrap_or("all present");
            match request.classification.intent {
                Intent::Greeting => format!("{actor} greets {listener} in {place}: \"{quote}\""),
                Intent::Question => format!("{actor} asks {listener} in {place}: \"{quote}\""),
                Intent::Threat => format!("{actor} threatens {listener} in {place}: \"{quote}\""),
                Intent::Trade => format!("{actor} haggles with {listener} in {place}: \"{quote}\""),
                Intent::Lore => format!("{actor} recounts old lore in {place}: \"{quote}\""),
                _ => format!("{actor} says to {listener} in {place}: \"{quote}\""),
            }
        }
        EventPayload::Action(action) => {
            let target = action
                .target
                .as_deref()
                .map(|target| format!(" {}", clean(target)))
                .unwrap_or_default();
            let description = action
                .text
                .as_deref()
                .map(|text| format!(" — \"{}\"", quote(text)))
                .unwrap_or_default();
            format!(
                "{actor} {}s{target} in {place}{description}",
                clean(&action.verb)
            )
        }
        EventPayload::Combat(combat) => {
            let target = clean(&combat.target);
            match combat.outcome {
                CombatOutcome::Hit => format!(
                    "{actor} strikes {target} in {place} for {} damage",
                    combat.damage.unwrap_or(0)
                ),
                CombatOutcome::Miss => format!("{actor} swings at {target} in {place} and misses"),
                CombatOutcome::Defeat => format!("{actor} defeats {target} in {place}!"),
                CombatOutcome::Flee => format!("{actor} flees from {target} in {place}"),
            }
        }
        EventPayload::Trade(trade) => {
            let verb = match trade.side {
                worldfleet_domain::TradeSide::Buy => "buys",
                worldfleet_domain::TradeSide::Sell => "sells",
            };
            format!(
                "{actor} {verb} {} {} at {place}",
                trade.quantity,
                clean(&trade.good)
            )
        }
        EventPayload::Capture(capture) => {
            format!("{actor} captures {} in {place}", clean(&capture.creature))
        }
        EventPayload::Breed(breed) => format!(
            "{actor} pairs {} with {} in {place}",
            clean(&breed.parent_a),
            clean(&breed.parent_b)
        ),
        EventPayload::Quest(quest) => {
            let name = clean(&quest.quest);
            match quest.status {
                QuestStatus::Started => format!("{actor} takes up the quest \"{name}\" in {place}"),
                QuestStatus::Advanced => format!(
                    "{actor} reaches step {} of \"{name}\" in {place}",
                    quest.step
                ),
                QuestStatus::Completed => {
                    format!("{actor} completes the quest \"{name}\" in {place}!")
                }
                QuestStatus::Failed => format!("{actor} fails the quest \"{name}\" in {place}"),
            }
        }
    }
}

/// "scene-3 of district-2" from `gm/district/scene[/slot]`.
fn place(partition: &str) -> String {
    let mut segments = partition.split('/');
    let _event = segments.next();
    match (segments.next(), segments.next()) {
        (Some(district), Some(scene)) => format!("{scene} of {district}"),
        _ => partition.to_owned(),
    }
}

fn clean(text: &str) -> String {
    text.chars()
        .filter(|character| !character.is_control())
        .collect()
}

fn quote(text: &str) -> String {
    let cleaned: String = clean(text).replace('"', "'");
    if cleaned.chars().count() > MAX_QUOTE_CHARS {
        let cut: String = cleaned.chars().take(MAX_QUOTE_CHARS - 1).collect();
        format!("{cut}…")
    } else {
        cleaned
    }
}

#[cfg(test)]
mod tests {
    use worldfleet_domain::envelope::{CombatPayload, DialoguePayload};
    use worldfleet_domain::{AcceptedEvent, Classification, PartitionUid, Tier};

    use super::*;

    fn request(payload: EventPayload, intent: Intent) -> ComposeRequest {
        ComposeRequest {
            event: AcceptedEvent {
                event_id: "01JD3Q7Z8X9Y0A1B2C3D4E5F6G".into(),
                gateway: "gw".into(),
                partition: PartitionUid::parse("gm-1/district-2/scene-3").unwrap(),
                kind: payload.kind(),
                actor: "p-1".into(),
                participants: vec![],
                faction: None,
                payload,
                sent_at_ms: 0,
                accepted_at_ms: 0,
            },
            classification: Classification {
                intent,
                salience: 10,
                tier: Tier::Template,
                classifier: "rules".into(),
            },
        }
    }

    #[test]
    fn renders_dialogue_with_a_sanitised_capped_quote() {
        let text = format!("Hail\u{0007} \"friend\" {}", "a".repeat(400));
        let line = render(&request(
            EventPayload::Dialogue(DialoguePayload {
                text,
                to: Some("p-2".into()),
            }),
            Intent::Greeting,
        ));
        assert!(line.starts_with("p-1 greets p-2 in scene-3 of district-2: \"Hail 'friend' "));
        assert!(!line.contains('\u{0007}'));
        assert!(line.ends_with("…\""));
    }

    #[test]
    fn renders_combat() {
        let line = render(&request(
            EventPayload::Combat(CombatPayload {
                target: "wolf".into(),
                outcome: CombatOutcome::Defeat,
                damage: None,
            }),
            Intent::Fight,
        ));
        assert_eq!(line, "p-1 defeats wolf in scene-3 of district-2!");
    }
}
