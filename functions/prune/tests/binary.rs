//! The `prune` binary started outside a Lambda execution environment: it must name what is
//! missing and exit non-zero, not panic inside the runtime. (Building this test also builds the
//! binary, which `tests/tests/lambda_runtime.rs` drives through the Runtime API.)

use std::process::Command;

#[test]
fn outside_lambda_it_names_the_missing_variables_and_exits_non_zero() {
    let mut command = Command::new(env!("CARGO_BIN_EXE_prune"));
    for variable in worldfleet_lambda::RUNTIME_VARIABLES {
        command.env_remove(variable);
    }
    let output = command.output().expect("run the binary");
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!output.status.success(), "{printed}");
    assert!(!printed.contains("panicked"), "{printed}");
    for variable in worldfleet_lambda::RUNTIME_VARIABLES {
        assert!(
            printed.contains(variable),
            "{variable} not named: {printed}"
        );
    }
}
