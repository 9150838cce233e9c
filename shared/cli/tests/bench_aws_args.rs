//! `worldfleet bench --aws` refuses bad input before it touches any endpoint: a clear error and
//! exit status 2, never a panic.

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
