//! Contract suites for the queue and table ports, run unchanged against every adapter.
//!
//! Each suite is a sequence of small `pub async fn`s, one per property, so a failure names the
//! property that broke (every panic message starts with the property's name). The suites create
//! their own queues and tables, named `{namespace}-…`, so repeated runs against a long-lived
//! emulator do not collide when each run passes a fresh namespace (see [`unique_namespace`]).
//!
//! The suites use real time (visibility timeouts of 1–2 s, no manual clock) because they also
//! run against SQS/DynamoDB emulators; they never assume an order SQS does not promise (standard
//! queues are unordered, receives may return fewer messages than asked for) and poll with short
//! long-polls instead of expecting one receive to return everything. Each suite takes well under
//! 30 s against an in-process adapter.
//!
//! ```ignore
//! #[tokio::test(flavor = "multi_thread")]
//! async fn embedded_queue_meets_the_contract() {
//!     let store = /* … */;
//!     worldfleet_contract::queue_contract(store.queue(), &unique_namespace("q")).await;
//! }
//! ```

pub mod queue;
pub mod table;

pub use queue::queue_contract;
pub use table::table_contract;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// A namespace that differs between runs and between calls in one run: `{prefix}-{time}{n}`,
/// short enough that the longest name a suite derives from it stays within SQS's 80 characters
/// when `prefix` is at most 20 characters.
pub fn unique_namespace(prefix: &str) -> String {
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as u64);
    let call = CALLS.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}-{}{call}", to_base36(millis))
}

fn to_base36(mut number: u64) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut text = Vec::new();
    loop {
        text.push(DIGITS[(number % 36) as usize]);
        number /= 36;
        if number == 0 {
            break;
        }
    }
    text.reverse();
    String::from_utf8(text).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_are_unique_and_valid_names() {
        let first = unique_namespace("ctr");
        let second = unique_namespace("ctr");
        assert_ne!(first, second);
        assert!(first.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
        assert!(first.len() < 30);
    }
}
