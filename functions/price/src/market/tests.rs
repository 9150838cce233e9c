//! Unit tests of the market window state machine and exactly-once transactions.

use proptest::prelude::*;
use worldfleet_domain::PartitionUid;

use super::*;
use crate::rules::MarketRules;

fn rules() -> MarketRules {
    MarketRules::builtin().unwrap()
}

fn station(rules: &MarketRules) -> StationMarket {
    StationMarket::open(
        PartitionUid::parse("region-1/station-7").unwrap(),
        500,
        rules,
    )
    .unwrap()
}

fn buy(id: &str, good: &str, quantity: i64) -> Transaction {
    Transaction {
        id: id.into(),
        side: Side::Buy,
        good: good.into(),
        quantity,
    }
}

const T0: u64 = 1_700_000_000_000;

#[test]
fn a_burst_within_one_second_makes_exactly_one_recompute_including_all() {
    let rules = rules();
    let mut market = station(&rules);
    let burst = 250;
    let mut flushes = Vec::new();
    for index in 0..burst {
        let decision = market
            .on_transaction(
                &buy(&format!("tx-{index}"), "ore", 1),
                T0 + index * 3,
                &rules,
            )
            .unwrap();
        assert!(matches!(
            decision.verdict,
            Verdict::Applied { window_id: 1, .. }
        ));
        assert!(decision.flushed.is_none());
        flushes.extend(decision.schedule_flush_at);
    }
    assert_eq!(
        flushes,
        vec![T0 + WINDOW_MS],
        "one timer for the whole burst"
    );
    assert_eq!(market.goods["ore"].supply, 500 - burst as i64);

    assert_eq!(
        market.on_window_end(1, T0 + 999, &rules).unwrap(),
        WindowEnd::NotDue {
            window_id: 1,
            flush_at_ms: T0 + WINDOW_MS
        }
    );
    let WindowEnd::Recomputed(outcome) = market.on_window_end(1, T0 + WINDOW_MS, &rules).unwrap()
    else {
        panic!("the due window must recompute");
    };
    assert_eq!(outcome.window_id, 1);
    assert_eq!(outcome.transactions, burst as u32);
    let ore = outcome
        .changes
        .iter()
        .find(|change| change.good == "ore")
        .unwrap();
    assert_eq!(ore.supply, 500 - burst as i64);
    assert_eq!(ore.demand, 500 + burst as i64, "every buy is in the demand");
    assert!(ore.after_milli > ore.before_milli);
    assert_eq!(market.recomputes, 1);
    assert!(market.pending.is_none());
}

#[test]
fn a_redelivered_window_end_never_recomputes_twice() {
    let rules = rules();
    let mut market = station(&rules);
    market
        .on_transaction(&buy("tx-1", "ore", 5), T0, &rules)
        .unwrap();
    assert!(matches!(
        market.on_window_end(1, T0 + 1_000, &rules).unwrap(),
        WindowEnd::Recomputed(_)
    ));
    let after_first = market.clone();
    for late in [T0 + 1_000, T0 + 1_001, T0 + 60_000] {
        assert_eq!(
            market.on_window_end(1, late, &rules).unwrap(),
            WindowEnd::AlreadyFlushed { window_id: 1 }
        );
    }
    assert_eq!(market, after_first);
    assert_eq!(market.recomputes, 1);
    // A timer for a window that never opened does nothing either.
    assert_eq!(
        market.on_window_end(7, T0 + 5_000, &rules).unwrap(),
        WindowEnd::NothingPending
    );
}

#[test]
fn duplicates_count_once_across_the_current_and_previous_window() {
    let rules = rules();
    let mut market = station(&rules);
    let tx = buy("tx-dup", "ice", 7);
    let first = market.on_transaction(&tx, T0, &rules).unwrap();
    assert!(matches!(first.verdict, Verdict::Applied { .. }));
    let supply_after = market.goods["ice"].supply;
    let second = market.on_transaction(&tx, T0 + 10, &rules).unwrap();
    assert_eq!(second.verdict, Verdict::Duplicate);
    assert_eq!(second.schedule_flush_at, None);
    assert_eq!(market.goods["ice"].supply, supply_after);
    market.on_window_end(1, T0 + 1_000, &rules).unwrap();
    // Still refused in the next window (the id moved to `decided_previous`).
    let third = market.on_transaction(&tx, T0 + 1_100, &rules).unwrap();
    assert_eq!(third.verdict, Verdict::Duplicate);
    assert_eq!(market.goods["ice"].supply, supply_after);
    assert_eq!(market.pending, None, "a duplicate opens no window");
}

#[test]
fn a_transaction_finding_a_due_window_flushes_it_first() {
    let rules = rules();
    let mut market = station(&rules);
    market
        .on_transaction(&buy("a", "ore", 1), T0, &rules)
        .unwrap();
    // The timer was lost; the next trade arrives 3 s later.
    let decision = market
        .on_transaction(&buy("b", "ore", 1), T0 + 3_000, &rules)
        .unwrap();
    let flushed = decision
        .flushed
        .expect("the overdue window is flushed inline");
    assert_eq!((flushed.window_id, flushed.transactions), (1, 1));
    assert!(matches!(
        decision.verdict,
        Verdict::Applied { window_id: 2, .. }
    ));
    assert_eq!(decision.schedule_flush_at, Some(T0 + 4_000));
    // The lost timer turning up late does nothing; window 2 flushes at its time.
    assert_eq!(
        market.on_window_end(1, T0 + 3_500, &rules).unwrap(),
        WindowEnd::AlreadyFlushed { window_id: 1 }
    );
    assert!(matches!(
        market.on_window_end(2, T0 + 4_000, &rules).unwrap(),
        WindowEnd::Recomputed(RecomputeOutcome {
            window_id: 2,
            transactions: 1,
            ..
        })
    ));
}

#[test]
fn any_timer_flushes_a_due_window_so_none_is_stranded() {
    let rules = rules();
    let mut market = station(&rules);
    market
        .on_transaction(&buy("a", "ore", 1), T0, &rules)
        .unwrap();
    market.on_window_end(1, T0 + 1_000, &rules).unwrap();
    market
        .on_transaction(&buy("b", "ore", 1), T0 + 1_200, &rules)
        .unwrap();
    // Window 2's timer is lost; a watchdog (or a stray re-delivery of window 1) fires later.
    assert_eq!(market.due_window(T0 + 2_200), Some(2));
    assert!(matches!(
        market.on_window_end(1, T0 + 2_500, &rules).unwrap(),
        WindowEnd::Recomputed(RecomputeOutcome { window_id: 2, .. })
    ));
    assert_eq!(market.due_window(T0 + 10_000), None);
}

#[test]
fn recomputes_are_at_least_a_second_apart_even_with_a_clock_going_backwards() {
    let rules = rules();
    let mut market = station(&rules);
    market
        .on_transaction(&buy("a", "ore", 1), T0, &rules)
        .unwrap();
    market.on_window_end(1, T0 + 1_500, &rules).unwrap();
    // Another worker's clock is behind.
    let decision = market
        .on_transaction(&buy("b", "ore", 1), T0 + 200, &rules)
        .unwrap();
    assert_eq!(decision.schedule_flush_at, Some(T0 + 2_500));
}

#[test]
fn bad_transactions_are_refused_not_panicked_on() {
    let rules = rules();
    let mut market = station(&rules);
    let cases = [
        (buy("bad id!", "ore", 1), RefuseReason::MalformedId),
        (buy("t1", "gold", 1), RefuseReason::UnknownGood),
        (buy("t2", "ore", 0), RefuseReason::InvalidQuantity),
        (buy("t3", "ore", -4), RefuseReason::InvalidQuantity),
        (buy("t4", "ore", 501), RefuseReason::InsufficientStock),
        (
            Transaction {
                id: "t5".into(),
                side: Side::Sell,
                good: "ore".into(),
                quantity: MAX_QUANTITY + 1,
            },
            RefuseReason::InvalidQuantity,
        ),
    ];
    let before = market.goods.clone();
    for (transaction, reason) in cases {
        let decision = market.on_transaction(&transaction, T0, &rules).unwrap();
        assert_eq!(
            decision.verdict,
            Verdict::Refused(reason),
            "{transaction:?}"
        );
        assert_eq!(decision.schedule_flush_at, None);
    }
    assert_eq!(market.goods, before);
    assert_eq!(market.pending, None);
    let mut broken = station(&rules);
    broken.goods.get_mut("ore").unwrap().supply = -1;
    assert!(matches!(
        broken.on_transaction(&buy("x", "ore", 1), T0, &rules),
        Err(PriceError::InvalidMarket { .. })
    ));
}

#[test]
fn sells_raise_supply_and_lower_the_price() {
    let rules = rules();
    let mut market = station(&rules);
    let sell = Transaction {
        id: "s1".into(),
        side: Side::Sell,
        good: "food".into(),
        quantity: 20_000,
    };
    let decision = market.on_transaction(&sell, T0, &rules).unwrap();
    assert_eq!(
        decision.verdict,
        Verdict::Applied {
            window_id: 1,
            unit_price_milli: 2_500,
            total_milli: 50_000_000
        }
    );
    let WindowEnd::Recomputed(outcome) = market.on_window_end(1, T0 + 1_000, &rules).unwrap()
    else {
        panic!("due");
    };
    let food = outcome
        .changes
        .iter()
        .find(|change| change.good == "food")
        .unwrap();
    assert!(food.after_milli < food.before_milli);
    // At most -15 % per recompute for food.
    assert_eq!(food.after_milli, 2_500 - 375);
}

proptest! {
    /// Whatever the interleaving of trades and timers, every applied transaction joins exactly
    /// one recompute, recomputes are at least a second apart, and duplicates apply once.
    #[test]
    fn every_applied_transaction_joins_exactly_one_recompute(
        steps in proptest::collection::vec((0_u8..4, 0_u64..1_500, 0_usize..40), 1..200)
    ) {
        let rules = rules();
        let mut market = station(&rules);
        let mut now = T0;
        let mut applied = 0_u64;
        let mut recomputed_transactions = 0_u64;
        let mut recompute_times = Vec::new();
        let mut record = |outcome: &RecomputeOutcome, times: &mut Vec<u64>| {
            recomputed_transactions += u64::from(outcome.transactions);
            times.push(outcome.recomputed_at_ms);
        };
        for (action, advance, id) in steps {
            now += advance;
            if action == 0 {
                let window = market.pending.map_or(market.last_window_id, |p| p.window_id);
                if let WindowEnd::Recomputed(outcome) =
                    market.on_window_end(window, now, &rules).unwrap()
                {
                    record(&outcome, &mut recompute_times);
                }
            } else {
                let side = if action == 1 { Side::Sell } else { Side::Buy };
                let transaction = Transaction {
                    id: format!("tx-{id}"),
                    side,
                    good: "ore".into(),
                    quantity: 3,
                };
                let decision = market.on_transaction(&transaction, now, &rules).unwrap();
                if let Some(outcome) = &decision.flushed {
                    record(outcome, &mut recompute_times);
                }
                if matches!(decision.verdict, Verdict::Applied { .. }) {
                    applied += 1;
                }
            }
        }
        now += 10_000;
        let last = market
            .due_window(now)
            .map(|window| market.on_window_end(window, now, &rules).unwrap());
        if let Some(WindowEnd::Recomputed(outcome)) = last {
            record(&outcome, &mut recompute_times);
        }
        prop_assert_eq!(applied, recomputed_transactions);
        prop_assert!(market.pending.is_none());
        for pair in recompute_times.windows(2) {
            prop_assert!(pair[1] >= pair[0] + WINDOW_MS);
        }
    }
}

#[test]
fn verdict_codes_are_the_stored_format() {
    let applied = Verdict::Applied {
        window_id: 3,
        unit_price_milli: 1_500,
        total_milli: 3_000,
    };
    assert_eq!(applied.code(), "applied");
    assert_eq!(Verdict::Duplicate.code(), "duplicate");
    assert_eq!(
        Verdict::Refused(RefuseReason::InsufficientStock).code(),
        "refused:insufficient_stock"
    );
}
