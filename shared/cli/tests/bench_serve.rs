//! `worldfleet bench serve` end to end at a small scale: subscribers on WebSockets, events
//! posted over HTTP (and in process with --direct), every expected frame delivered, figures
//! printed as JSON. The speed targets are the benchmark's business, not this test's.

use std::process::Command;

fn bench(extra: &[&str]) -> serde_json::Value {
    let output = Command::new(env!("CARGO_BIN_EXE_worldfleet"))
        .args([
            "bench",
            "serve",
            "--subscribers",
            "40",
            "--sockets",
            "4",
            "--rate",
            "40",
            "--seconds",
            "2",
            "--json",
        ])
        .args(extra)
        .env_remove("WORLDFLEET_EMBEDDINGS_URL")
        .env_remove("WORLDFLEET_LLM_BASE_URL")
        .output()
        .expect("run worldfleet bench serve");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|error| panic!("not JSON ({error}): {stdout}"))
}

#[test]
fn every_posted_event_reaches_each_recipients_socket_over_http_and_in_process() {
    for (extra, ingress) in [(&[][..], "http"), (&["--direct"][..], "in-process")] {
        let figures = bench(extra);
        assert_eq!(figures["ingress"], ingress);
        assert_eq!(figures["subscribers"], 40);
        let posted = figures["posted"].as_u64().unwrap();
        assert!(posted >= 40, "{figures}");
        assert_eq!(figures["frames_expected"], posted * 8, "{figures}");
        assert_eq!(
            figures["frames_delivered"], figures["frames_expected"],
            "{figures}"
        );
        assert!(
            figures["latency_p99_ms"].as_f64().unwrap() > 0.0,
            "{figures}"
        );
        assert!(
            figures["latency_p50_ms"].as_f64().unwrap()
                <= figures["latency_p99_ms"].as_f64().unwrap()
        );
    }
}

#[test]
fn bad_bench_serve_flags_are_refused_with_a_reason() {
    for (flags, reason) in [
        (
            &["--subscribers", "3"][..],
            "--subscribers must be at least --fan-out",
        ),
        (&["--batch", "0"][..], "--batch must be 1 to 100"),
        (&["--rate", "0"][..], "--rate must be above 0"),
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_worldfleet"))
            .args(["bench", "serve"])
            .args(flags)
            .output()
            .expect("run worldfleet");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(reason), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}
