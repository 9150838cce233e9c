//! Shared by the cli's integration tests: `worldfleet serve` started as a studio starts it.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, ChildStderr, Command, Stdio};

/// A running `worldfleet serve` child, its log, and the address it printed.
pub struct Served {
    pub child: Child,
    pub stderr: BufReader<ChildStderr>,
    /// `host:port` from the first log line.
    pub address: String,
}

/// Starts `worldfleet serve --bind 127.0.0.1:0 --data-dir DATA [extra…]` trusting
/// `gateway_keys` (`gateway=hexkey,…`), with no model endpoints configured, and reads the
/// address from its first line.
pub fn start_serve(extra: &[&str], data_dir: &Path, gateway_keys: &str) -> Served {
    let mut child = Command::new(env!("CARGO_BIN_EXE_worldfleet"))
        .args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .args(extra)
        .env("WORLDFLEET_GATEWAY_KEYS", gateway_keys)
        .env_remove("WORLDFLEET_EMBEDDINGS_URL")
        .env_remove("WORLDFLEET_LLM_BASE_URL")
        .stderr(Stdio::piped())
        .spawn()
        .expect("start worldfleet serve");
    let mut stderr = BufReader::new(child.stderr.take().expect("piped stderr"));
    let mut first = String::new();
    stderr
        .read_line(&mut first)
        .expect("read serve's first line");
    let address = first
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no address in {first:?}"))
        .to_owned();
    Served {
        child,
        stderr,
        address,
    }
}

/// The status code and body of a raw HTTP/1.1 response (status 0 when there is none).
pub fn status_and_body(response: &str) -> (u16, String) {
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}
