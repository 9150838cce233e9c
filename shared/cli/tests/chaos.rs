//! `worldfleet chaos` at CI size: 20,000 events through two `worldfleet serve` processes, a
//! calm one and one with faults injected at every store boundary that is SIGKILLed five times
//! and restarted on its store. Both audits must be clean (nothing lost, nothing doubled, every
//! bad envelope refused with its reason, no dead letters), the world audits too (every trade
//! recorded once, every capture and breed request consumed once, no creature lost or doubled),
//! and every compared table identical, the world's trades, stock and consumed requests included.
//! The million-event figures in the README come from the same command, run by hand.

use std::process::Command;

#[test]
fn a_killed_and_faulted_process_derives_exactly_what_a_calm_one_does() {
    let output = Command::new(env!("CARGO_BIN_EXE_worldfleet"))
        .args(["chaos", "--events", "20000", "--kills", "5", "--json"])
        .env("WORLDFLEET_LOG", "error")
        .output()
        .expect("run worldfleet chaos");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "worldfleet chaos failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_str(stdout.lines().last().expect("a JSON line"))
            .expect("the last line is JSON");
    assert_eq!(report["kills"], 5, "{report}");
    assert_eq!(report["identical"], true, "{report}");
    let faults = &report["faults"];
    assert!(
        faults["crashes_before_write"].as_u64() > Some(0)
            && faults["crashes_after_write"].as_u64() > Some(0)
            && faults["lost_deletes"].as_u64() > Some(0),
        "faults were injected: {faults}"
    );
    for run in ["calm", "chaos"] {
        let audit = &report[run]["audit"];
        assert_eq!(audit["good_sent"], 20_000, "{run}: {audit}");
        assert_eq!(audit["ledger_entries"], 20_000, "{run}: {audit}");
        assert_eq!(audit["lost"], 0, "{run}: {audit}");
        assert_eq!(audit["duplicates"], 0, "{run}: {audit}");
        assert_eq!(audit["wrong_reason"], 0, "{run}: {audit}");
        assert_eq!(report[run]["dead_letters"], 0, "{run}");
        let world = &report[run]["world"];
        assert!(world["trades_sent"].as_u64() > Some(0), "{run}: {world}");
        assert_eq!(
            world["trades_recorded"], world["trades_sent"],
            "{run}: {world}"
        );
        assert_eq!(
            world["requests_applied"].as_u64().unwrap_or(0)
                + world["requests_refused"].as_u64().unwrap_or(0),
            world["captures_sent"].as_u64().unwrap_or(0)
                + world["breeds_sent"].as_u64().unwrap_or(0),
            "{run}: every capture and breed request consumed: {world}"
        );
        assert_eq!(world["lost"], 0, "{run}: {world}");
        assert_eq!(world["duplicates"], 0, "{run}: {world}");
    }
    assert_eq!(
        report["calm"]["digests"], report["chaos"]["digests"],
        "the tables match"
    );
}
