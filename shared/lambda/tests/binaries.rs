//! Every stage's Lambda binary started outside a Lambda execution environment: it must name
//! what is missing and exit non-zero, not panic inside the runtime. (Building this test also
//! builds the binaries, which `tests/tests/lambda_runtime.rs` drives through the Runtime API.)

use std::process::Command;

const BINARIES: [(&str, &str); 11] = [
    ("intake", env!("CARGO_BIN_EXE_intake")),
    ("classify", env!("CARGO_BIN_EXE_classify")),
    ("compose", env!("CARGO_BIN_EXE_compose")),
    ("distribute", env!("CARGO_BIN_EXE_distribute")),
    ("prune", env!("CARGO_BIN_EXE_prune")),
    ("market", env!("CARGO_BIN_EXE_market")),
    ("price-window", env!("CARGO_BIN_EXE_price-window")),
    ("production", env!("CARGO_BIN_EXE_production")),
    ("ecology-input", env!("CARGO_BIN_EXE_ecology-input")),
    ("ecology", env!("CARGO_BIN_EXE_ecology")),
    ("watchdog", env!("CARGO_BIN_EXE_watchdog")),
];

#[test]
fn there_is_one_binary_per_registered_stage() {
    let names: Vec<&str> = BINARIES.iter().map(|(name, _)| *name).collect();
    assert_eq!(names, worldfleet_stages::all_names());
}

#[test]
fn outside_lambda_every_binary_names_the_missing_variables_and_exits_non_zero() {
    for (name, binary) in BINARIES {
        let mut command = Command::new(binary);
        for variable in worldfleet_lambda::RUNTIME_VARIABLES {
            command.env_remove(variable);
        }
        let output = command.output().expect("run the binary");
        let printed = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(!output.status.success(), "{name}: {printed}");
        assert!(!printed.contains("panicked"), "{name}: {printed}");
        for variable in worldfleet_lambda::RUNTIME_VARIABLES {
            assert!(
                printed.contains(variable),
                "{name}: {variable} not named: {printed}"
            );
        }
    }
}
