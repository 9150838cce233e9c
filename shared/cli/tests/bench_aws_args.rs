//! `worldfleet bench` argument checks: bad input is refused before any endpoint is touched,
//! with a clear error and exit status 2, never a panic.

use std::process::Command;

#[test]
fn bench_aws_refuses_zero_events_with_a_clear_error() {
    let output = Command::new(env!("CARGO_BIN_EXE_worldfleet"))
        .args(["bench", "--aws", "--events", "0"])
        .output()
        .expect("run worldfleet");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--events must be at least 1"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn bench_takes_buffered_embedded_and_refuses_it_with_aws() {
    let help = Command::new(env!("CARGO_BIN_EXE_worldfleet"))
        .args(["bench", "--help"])
        .output()
        .expect("run worldfleet");
    assert!(String::from_utf8_lossy(&help.stdout).contains("--buffered"));

    let output = Command::new(env!("CARGO_BIN_EXE_worldfleet"))
        .args(["bench", "--aws", "--buffered"])
        .output()
        .expect("run worldfleet");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("cannot be used with"), "{stderr}");
}

fn cost(args: &[&str]) -> (Option<i32>, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_worldfleet"))
        .arg("cost")
        .args(args)
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
        .output()
        .expect("run worldfleet");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn cost_refuses_bad_assumptions_and_a_missing_report_with_what_to_do() {
    let (code, _, stderr) = cost(&["--model-share", "2"]);
    assert_ne!(code, Some(0));
    assert!(
        stderr.contains("--model-share must be between 0 and 1"),
        "{stderr}"
    );
    let (code, _, stderr) = cost(&["--report", "/nonexistent/bench.json"]);
    assert_ne!(code, Some(0));
    assert!(
        stderr.contains("worldfleet bench --aws --report FILE"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}
