//! worldfleet's fuzz targets: one pure `pub fn <target>(data: &[u8])` per parser that reads
//! bytes from outside the fleet.
//!
//! Each target feeds `data` to the product's own parsing function and then checks what must
//! hold for any input: nothing panics (a bad input is an error value, never a crash), and what
//! is accepted means one thing (it round-trips, or agrees with a second reading). A violated
//! property is an `assert!`, so libFuzzer reports it as a crash like any other panic.
//!
//! The functions are ordinary library code built on stable: `tests/replay.rs` runs every file
//! of `corpus/<target>/` and `regressions/<target>/` through them in `cargo test`, and the
//! libFuzzer harnesses in `fuzz_targets/` (feature `libfuzzer`, nightly, through cargo-fuzz)
//! call the same functions. [`TARGETS`] is the one list both go by.

mod codec;
mod envelope;
mod events;
mod json;
mod rules;
mod sigv4;
mod sqs;
mod uid;

pub use codec::codec;
pub use envelope::envelope;
pub use events::events;
pub use json::json;
pub use rules::rules;
pub use sigv4::sigv4;
pub use sqs::sqs;
pub use uid::uid;

/// A fuzz target: its name (the harness binary and the corpus directory) and its function.
pub struct Target {
    pub name: &'static str,
    pub run: fn(&[u8]),
}

/// Every target. A harness in `fuzz_targets/`, a `[[bin]]` in `Cargo.toml` and a
/// `corpus/<name>/` directory exist for each; the replay test checks the last two.
pub const TARGETS: &[Target] = &[
    Target {
        name: "envelope",
        run: envelope,
    },
    Target {
        name: "json",
        run: json,
    },
    Target {
        name: "uid",
        run: uid,
    },
    Target {
        name: "codec",
        run: codec,
    },
    Target {
        name: "rules",
        run: rules,
    },
    Target {
        name: "sqs",
        run: sqs,
    },
    Target {
        name: "sigv4",
        run: sigv4,
    },
    Target {
        name: "events",
        run: events,
    },
];
