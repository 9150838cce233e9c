//! The pure part of the tick stage: what a timer asks of the cell as read, and the one table
//! transaction that applies a tick.
//!
//! [`timer_step`] reads the timer against the stored tick; [`plan_tick`] turns the stored cell,
//! the pending input items read under it and the clock into a [`TickPlan`]: the cell as it will
//! be stored, the transaction that stores it (conditioned on the tick read), and what became of
//! each input. Neither touches a store: the shell in [`super::ticks`] reads, executes the plan
//! and re-reads when its condition is lost.

use std::borrow::Cow;

use worldfleet_domain::names::ECOLOGY_TABLE;
use worldfleet_ports::{Condition, Item, Key, TransactWrite};

use super::store::{Outbox, PendingInput, StoredCell, pending_from_item, seen_item};
use crate::error::Result;
use crate::rules::Rules;
use crate::sim::{RejectReason, TickInputs, tick};

/// What a timer `(cell, tick)` asks of a stored cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerStep {
    /// The cell's next tick: apply it.
    Apply,
    /// The tick stored: it was applied; only its outbox may be owed.
    CompleteOutbox,
    /// Any other tick: a stale or spare timer, dropped.
    Stale,
}

/// What timer tick `timer_tick` asks of a cell whose stored tick is `stored_tick`.
pub fn timer_step(timer_tick: u64, stored_tick: u64) -> TimerStep {
    if timer_tick == stored_tick {
        TimerStep::CompleteOutbox
    } else if Some(timer_tick) == stored_tick.checked_add(1) {
        TimerStep::Apply
    } else {
        TimerStep::Stale
    }
}

/// What became of one consumed input; its [`code`](Self::code) is stored in the input's seen
/// marker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputVerdict {
    /// Applied by the tick.
    Applied,
    /// Refused by the tick.
    Refused(RejectReason),
    /// The pending item could not be decoded: consumed as refused. Carries the decode error.
    Corrupt(String),
}

impl InputVerdict {
    /// The stable code stored as the seen marker's `outcome`: `applied`, `refused:<reason
    /// code>` or `corrupt`. Readers (the world audit) count `applied` against everything else.
    pub fn code(&self) -> Cow<'static, str> {
        match self {
            Self::Applied => Cow::Borrowed("applied"),
            Self::Refused(reason) => Cow::Owned(format!("refused:{}", reason.code())),
            Self::Corrupt(_) => Cow::Borrowed("corrupt"),
        }
    }
}

/// One pending input the tick consumes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumedInput {
    /// The input's key (`KEY` of `pending#KEY`).
    pub input_key: String,
    pub verdict: InputVerdict,
}

/// How one tick is applied.
#[derive(Debug, Clone, PartialEq)]
pub struct TickPlan {
    /// The cell as stored by `writes`: next state, the tick's outbox, running totals.
    pub next: StoredCell,
    /// One table transaction: the state put conditioned on the tick read, then a delete of
    /// each consumed input (conditioned on its existence), then each input's seen marker.
    pub writes: Vec<TransactWrite>,
    /// The inputs consumed, in the order read.
    pub consumed: Vec<ConsumedInput>,
}

/// Plans tick `timer_tick` (= `stored.state.tick + 1`) of `stored` over the pending input items
/// `pending` (`pending#KEY` items of the cell), applied at `now_ms`.
pub fn plan_tick(
    stored: &StoredCell,
    pending: &[Item],
    timer_tick: u64,
    now_ms: u64,
    rules: &Rules,
) -> Result<TickPlan> {
    let cell = stored.state.cell.as_str();
    let mut inputs = TickInputs {
        tick: timer_tick,
        ..TickInputs::default()
    };
    let mut decoded: Vec<(&Key, String, std::result::Result<PendingInput, String>)> =
        Vec::with_capacity(pending.len());
    for item in pending {
        let input_key = item
            .key
            .sk
            .strip_prefix("pending#")
            .unwrap_or(&item.key.sk)
            .to_owned();
        let input = pending_from_item(item).map_err(|error| error.to_string());
        if let Ok(input) = &input {
            match input {
                PendingInput::Arrival(migrant) => inputs.arrivals.push(migrant.clone()),
                PendingInput::Capture(capture) => inputs.captures.push(capture.clone()),
                PendingInput::Breed(breed) => inputs.breed_requests.push(breed.clone()),
            }
        }
        decoded.push((&item.key, input_key, input));
    }
    let outcome = tick(&stored.state, &inputs, rules)?;
    let consumed: Vec<ConsumedInput> = decoded
        .iter()
        .map(|(_, input_key, input)| ConsumedInput {
            input_key: input_key.clone(),
            verdict: match input {
                Err(error) => InputVerdict::Corrupt(error.clone()),
                Ok(input) => outcome
                    .rejected
                    .iter()
                    .find(|rejection| rejection.key == input.rejection_key())
                    .map_or(InputVerdict::Applied, |rejection| {
                        InputVerdict::Refused(rejection.reason)
                    }),
            },
        })
        .collect();

    let returned: Vec<_> = outcome
        .rejected
        .iter()
        .filter_map(|rejection| rejection.returned.clone())
        .collect();
    let mut totals = stored.totals;
    totals.add(&outcome.counts);
    totals.returned += returned.len() as u64;
    totals.news += outcome.news.len() as u64;
    totals.lineages_founded += outcome
        .births
        .iter()
        .filter(|birth| birth.founded_lineage)
        .count() as u64;
    let applied = consumed
        .iter()
        .filter(|input| input.verdict == InputVerdict::Applied)
        .count() as u64;
    totals.inputs_applied += applied;
    totals.inputs_refused += consumed.len() as u64 - applied;
    let next = StoredCell {
        state: outcome.next,
        outbox: Some(Outbox {
            tick: timer_tick,
            applied_at_ms: now_ms,
            emigrants: outcome.emigrants,
            news: outcome.news,
            captured: outcome.captured,
            returned,
        }),
        totals,
        updated_at_ms: now_ms,
    };

    let mut writes = Vec::with_capacity(1 + consumed.len() * 2);
    writes.push(TransactWrite::Put {
        table: ECOLOGY_TABLE.to_owned(),
        item: next.to_item()?,
        condition: Some(Condition::eq("tick", stored.state.tick as i64)),
    });
    writes.extend(decoded.iter().map(|(key, _, _)| TransactWrite::Delete {
        table: ECOLOGY_TABLE.to_owned(),
        key: (*key).clone(),
        condition: Some(Condition::ItemExists),
    }));
    writes.extend(consumed.iter().map(|input| TransactWrite::Put {
        table: ECOLOGY_TABLE.to_owned(),
        item: seen_item(
            cell,
            &input.input_key,
            timer_tick,
            &input.verdict.code(),
            now_ms / 1000,
        ),
        condition: None,
    }));
    Ok(TickPlan {
        next,
        writes,
        consumed,
    })
}

#[cfg(test)]
mod tests {
    use worldfleet_domain::PartitionUid;
    use worldfleet_ports::TTL_ATTRIBUTE;

    use super::*;
    use crate::shell::store::{CellTotals, SEEN_LIFETIME_SECS, pending_key, store_pending};
    use crate::sim::{CaptureRequest, CreatureId, Founders, genesis};

    const NOW_MS: u64 = 1_763_700_123_456;
    const CELL: &str = "realm-1/zone-2/cell-3";

    fn rules() -> Rules {
        Rules::builtin().unwrap()
    }

    fn stored_cell(rules: &Rules) -> StoredCell {
        let state = genesis(
            PartitionUid::parse(CELL).unwrap(),
            100,
            Vec::new(),
            &[Founders {
                species: "glimmerfox".into(),
                count: 6,
            }],
            rules,
        )
        .unwrap();
        StoredCell {
            totals: CellTotals {
                founders: state.creatures.len() as u64,
                ..CellTotals::default()
            },
            state,
            outbox: None,
            updated_at_ms: 1,
        }
    }

    /// The pending item the input stage stores for `input`.
    fn pending_item(input: &PendingInput) -> Item {
        match store_pending(CELL, input).unwrap().remove(0) {
            TransactWrite::Put { item, .. } => item,
            other => panic!("the pending put comes first, got {other:?}"),
        }
    }

    fn capture(request_id: &str, creature_id: &CreatureId) -> PendingInput {
        PendingInput::Capture(CaptureRequest {
            request_id: request_id.into(),
            player_id: "player-1".into(),
            creature_id: creature_id.clone(),
        })
    }

    #[test]
    fn a_timer_applies_the_next_tick_completes_the_stored_one_and_drops_the_rest() {
        assert_eq!(timer_step(8, 7), TimerStep::Apply);
        assert_eq!(timer_step(7, 7), TimerStep::CompleteOutbox);
        assert_eq!(timer_step(0, 0), TimerStep::CompleteOutbox);
        assert_eq!(timer_step(9, 7), TimerStep::Stale);
        assert_eq!(timer_step(6, 7), TimerStep::Stale);
        assert_eq!(timer_step(0, u64::MAX), TimerStep::Stale);
    }

    #[test]
    fn verdict_codes_are_the_stored_format() {
        assert_eq!(InputVerdict::Applied.code(), "applied");
        assert_eq!(
            InputVerdict::Refused(RejectReason::NotInCell).code(),
            "refused:not_in_cell"
        );
        assert_eq!(InputVerdict::Corrupt("bad json".into()).code(), "corrupt");
    }

    #[test]
    fn a_tick_without_inputs_is_one_put_conditioned_on_the_tick_read() {
        let rules = rules();
        let stored = stored_cell(&rules);
        let plan = plan_tick(&stored, &[], 1, NOW_MS, &rules).unwrap();
        assert!(plan.consumed.is_empty());
        assert_eq!(plan.next.state.tick, 1);
        assert_eq!(plan.next.updated_at_ms, NOW_MS);
        let outbox = plan.next.outbox.as_ref().unwrap();
        assert_eq!((outbox.tick, outbox.applied_at_ms), (1, NOW_MS));
        assert_eq!(plan.next.totals.inputs_applied, 0);
        assert_eq!(plan.next.totals.inputs_refused, 0);
        assert_eq!(
            plan.writes,
            vec![TransactWrite::Put {
                table: ECOLOGY_TABLE.to_owned(),
                item: plan.next.to_item().unwrap(),
                condition: Some(Condition::eq("tick", 0)),
            }]
        );
        // The same inputs and clock give the same plan: a lost race re-plans identically.
        assert_eq!(plan, plan_tick(&stored, &[], 1, NOW_MS, &rules).unwrap());
    }

    #[test]
    fn each_input_is_deleted_and_marked_with_its_verdict() {
        let rules = rules();
        let stored = stored_cell(&rules);
        let present = stored.state.creatures[0].id.clone();
        let absent = CreatureId::parse(&format!("{CELL}~0~999")).unwrap();
        let applied = capture("req-applied", &present);
        let refused = capture("req-refused", &absent);
        let corrupt = Item::new(pending_key(CELL, "c#req-corrupt")).with("input", "{not json");
        let pending = vec![pending_item(&applied), pending_item(&refused), corrupt];

        let plan = plan_tick(&stored, &pending, 1, NOW_MS, &rules).unwrap();

        let verdicts: Vec<(&str, Cow<'static, str>)> = plan
            .consumed
            .iter()
            .map(|input| (input.input_key.as_str(), input.verdict.code()))
            .collect();
        assert_eq!(
            verdicts,
            vec![
                ("c#req-applied", Cow::Borrowed("applied")),
                ("c#req-refused", Cow::Borrowed("refused:not_in_cell")),
                ("c#req-corrupt", Cow::Borrowed("corrupt")),
            ]
        );
        assert_eq!(plan.next.totals.inputs_applied, 1);
        assert_eq!(plan.next.totals.inputs_refused, 2);
        assert_eq!(plan.next.totals.captured, 1);
        assert_eq!(plan.next.outbox.as_ref().unwrap().captured.len(), 1);

        assert_eq!(plan.writes.len(), 1 + 2 * pending.len());
        assert!(matches!(
            &plan.writes[0],
            TransactWrite::Put { item, condition: Some(condition), .. }
                if item.key.sk == "state" && *condition == Condition::eq("tick", 0)
        ));
        for (write, item) in plan.writes[1..4].iter().zip(&pending) {
            assert_eq!(
                *write,
                TransactWrite::Delete {
                    table: ECOLOGY_TABLE.to_owned(),
                    key: item.key.clone(),
                    condition: Some(Condition::ItemExists),
                }
            );
        }
        for (write, (input_key, code)) in plan.writes[4..].iter().zip(&verdicts) {
            let TransactWrite::Put {
                item,
                condition: None,
                ..
            } = write
            else {
                panic!("a seen marker is an unconditional put, got {write:?}");
            };
            assert_eq!(item.key, Key::new(CELL, format!("seen#{input_key}")));
            assert_eq!(item.i64("tick"), Some(1));
            assert_eq!(item.str("outcome"), Some(code.as_ref()));
            assert_eq!(
                item.i64(TTL_ATTRIBUTE),
                Some((NOW_MS / 1000 + SEEN_LIFETIME_SECS) as i64)
            );
        }
    }
}
