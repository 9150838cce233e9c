//! `worldfleet bench --aws` and `worldfleet cost` on the emulators: the bench audits its run,
//! bills every narrative stage (prune included) with Lambda, DynamoDB and storage lines, writes a
//! report, and `cost` turns that report into a month. Runs with `WORLDFLEET_LOCAL_AWS=1` and the
//! local stack up (`scripts/test-aws.sh`); otherwise it says it skipped.

use std::process::Command;

use serde_json::Value;

fn enabled() -> bool {
    let on = std::env::var("WORLDFLEET_LOCAL_AWS").is_ok_and(|value| value == "1");
    if !on {
        eprintln!(
            "*** SKIPPED: set WORLDFLEET_LOCAL_AWS=1 with the local stack running (scripts/test-aws.sh does both) ***"
        );
    }
    on
}

fn worldfleet(args: &[&str]) -> (String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_worldfleet"))
        .args(args)
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
        .output()
        .expect("run worldfleet");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "worldfleet {args:?} failed\n{stdout}\n{stderr}"
    );
    (stdout, stderr)
}

#[test]
fn the_bench_bills_every_narrative_stage_and_cost_prices_a_month() {
    if !enabled() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let report_path = dir.path().join("bench-aws.json");
    let report_arg = report_path.to_str().unwrap();
    let (stdout, _) = worldfleet(&[
        "bench",
        "--aws",
        "--events",
        "300",
        "--workers",
        "1",
        "--wait-secs",
        "1",
        "--report",
        report_arg,
    ]);
    assert!(
        stdout.contains("the whole bill per million events"),
        "{stdout}"
    );

    let report: Value = serde_json::from_str(&std::fs::read_to_string(&report_path).unwrap())
        .expect("the report is JSON");
    assert_eq!(report["lost"], 0);
    assert_eq!(report["duplicates"], 0);
    assert_eq!(report["events"], 300);
    let measured: Vec<&str> = report["measure"]["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|stage| stage["stage"].as_str().unwrap())
        .collect();
    assert_eq!(
        measured,
        [
            "gateway",
            "intake",
            "classify",
            "compose",
            "distribute",
            "prune"
        ]
    );
    for stage in &report["measure"]["stages"].as_array().unwrap()[1..] {
        assert!(stage["invocations"].as_u64().unwrap() > 0, "{stage}");
        assert!(stage["billed_ms"].as_u64().unwrap() > 0, "{stage}");
        assert_eq!(stage["memory_mb"], 256, "the template's memory size");
    }
    let stored: u64 = report["measure"]["stored_bytes"]
        .as_object()
        .unwrap()
        .values()
        .map(|bytes| bytes.as_u64().unwrap())
        .sum();
    assert!(
        stored > 300 * 100,
        "every event leaves its ledger entry at least: {stored}"
    );
    // Each stage's writes by table: distribute writes feed pages, and plans its batches on
    // the canon.
    let distribute = report["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|stage| stage["stage"] == "distribute")
        .unwrap();
    for table in ["feeds", "canon", "memory"] {
        assert!(
            distribute["write_units_per_event_by_table"][table]
                .as_f64()
                .unwrap()
                > 0.0,
            "{distribute}"
        );
    }
    let lines = report["bill"]["lines"].as_array().unwrap();
    for item in [
        "SQS FIFO requests (distribute)",
        "DynamoDB writes (distribute)",
        "Lambda requests (intake)",
        "Lambda duration (prune, 256 MB arm64)",
        "DynamoDB storage",
    ] {
        assert!(
            lines
                .iter()
                .any(|line| line["item"].as_str().unwrap().starts_with(item)),
            "no `{item}` line in {lines:?}"
        );
    }
    let total = report["bill"]["dollars_per_million_events"]
        .as_f64()
        .unwrap();
    let requests_only = report["total_dollars_per_million_events"].as_f64().unwrap();
    assert!(total > requests_only, "{total} vs {requests_only}");

    let (month, _) = worldfleet(&[
        "cost",
        "--report",
        report_arg,
        "--ccu",
        "20000",
        "--events-per-player-minute",
        "2",
        "--json",
    ]);
    assert!(month.contains("20000 concurrent players × 2 events a minute = 667 events/s"));
    let json: Value = serde_json::from_str(month.lines().last().unwrap()).unwrap();
    let expected_events = 20_000.0 * 2.0 / 60.0 * 730.0 * 3600.0;
    assert!((json["events"].as_f64().unwrap() - expected_events).abs() < 1.0);
    assert!(json["dollars"].as_f64().unwrap() > total * expected_events / 1e6);
}
