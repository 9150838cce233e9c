//! The dashboard in a real browser: `worldfleet serve --world` runs, the synthetic world's
//! gateway posts its envelopes (narrative, trades, captures and deliberately bad ones) through
//! `POST /v1/events` while three players follow their feeds over SSE, and headless Chromium opens
//! `GET /` through the DevTools protocol. The test waits until every chart shows data, fails
//! naming the charts that stayed empty, and saves a screenshot (`dashboard.png`) in the test
//! output directory: `$WORLDFLEET_TEST_OUTPUT`, else `$CARGO_TARGET_TMPDIR/test-output`.
//!
//! The browser is `$WORLDFLEET_BROWSER`, else `chromium` on the path; `scripts/test.sh` installs
//! Debian's `chromium` first, so CI always runs this. Without a browser the test says so and
//! passes only when `WORLDFLEET_REQUIRE_BROWSER` is unset.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use worldfleet_testbed::{World, WorldSpec};

mod common;
use common::{Served, start_serve, status_and_body};

/// Every chart the page draws (`section#chart-{id}`).
const CHARTS: [&str; 7] = worldfleet_serve::dashboard::CHARTS;
/// How long the charts may take to fill.
const DEADLINE: Duration = Duration::from_secs(120);

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Kills the child when the test ends, passing or not.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn browser() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("WORLDFLEET_BROWSER") {
        return Some(PathBuf::from(path));
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .flat_map(|dir| ["chromium", "chromium-browser"].map(|name| dir.join(name)))
            .find(|candidate| candidate.is_file())
    })
}

fn output_dir() -> PathBuf {
    std::env::var_os("WORLDFLEET_TEST_OUTPUT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("test-output"))
}

/// A plain HTTP/1.1 request on a fresh connection; returns (status, body).
fn http(address: &str, method: &str, path: &str, headers: &str, body: &[u8]) -> (u16, String) {
    let mut stream = TcpStream::connect(address).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nhost: {address}\r\nconnection: close\r\n{headers}\
         content-length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let response = String::from_utf8_lossy(&response).into_owned();
    status_and_body(&response)
}

fn signed_headers(key: &[u8], method: &str, path: &str, body: &[u8]) -> String {
    let timestamp = now_ms();
    let signature = worldfleet_serve::sign_request(key, method, path, timestamp, body);
    format!(
        "content-type: application/json\r\nx-worldfleet-gateway: gw-synthetic\r\n\
         x-worldfleet-timestamp: {timestamp}\r\nx-worldfleet-signature: {signature}\r\n"
    )
}

/// Posts the world's envelopes through the door, 20 per request, about 200 a second, until
/// `stop` is raised or the world is finished.
fn post_world(address: String, key: Vec<u8>, spec: WorldSpec, stop: Arc<AtomicBool>) -> u64 {
    let mut world = World::new(spec);
    let mut posted = 0;
    while !stop.load(Ordering::Relaxed) && !world.finished() {
        let bodies: Vec<Value> = std::iter::from_fn(|| world.next(now_ms()))
            .take(20)
            .filter_map(|emitted| serde_json::from_str(&emitted.body).ok())
            .collect();
        if bodies.is_empty() {
            continue;
        }
        let body = serde_json::to_vec(&bodies).unwrap();
        let headers = signed_headers(&key, "POST", "/v1/events", &body);
        let (status, answer) = http(&address, "POST", "/v1/events", &headers, &body);
        assert!(
            (200..300).contains(&status),
            "POST /v1/events answered {status}: {answer}"
        );
        posted += bodies.len() as u64;
        std::thread::sleep(Duration::from_millis(100));
    }
    posted
}

/// Follows `feed` over SSE until `stop` is raised (the subscribers chart counts it).
fn follow(address: String, key: Vec<u8>, feed: String, stop: Arc<AtomicBool>) {
    let path = format!("/v1/feeds/{feed}/stream");
    let headers = signed_headers(&key, "GET", &path, b"");
    let mut stream = TcpStream::connect(&address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let head = format!("GET {path} HTTP/1.1\r\nhost: {address}\r\n{headers}\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    let mut buffer = [0u8; 8192];
    while !stop.load(Ordering::Relaxed) {
        match stream.read(&mut buffer) {
            Ok(0) => return,
            Ok(_) => {}
            Err(error)
                if matches!(
                    error.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return,
        }
    }
}

/// One DevTools protocol session on a page target.
struct DevTools {
    socket: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    next_id: u64,
}

impl DevTools {
    async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let request = json!({ "id": id, "method": method, "params": params });
        self.socket
            .send(Message::text(request.to_string()))
            .await
            .expect("send to the browser");
        loop {
            let message = tokio::time::timeout(Duration::from_secs(30), self.socket.next())
                .await
                .unwrap_or_else(|_| panic!("the browser did not answer {method}"))
                .expect("the browser closed the session")
                .expect("read from the browser");
            let Message::Text(text) = message else {
                continue;
            };
            let answer: Value = serde_json::from_str(&text).unwrap();
            if answer["id"].as_u64() == Some(id) {
                assert!(
                    answer.get("error").is_none(),
                    "{method} failed: {}",
                    answer["error"]
                );
                return answer["result"].clone();
            }
        }
    }

    async fn evaluate(&mut self, expression: &str) -> Value {
        let result = self
            .call(
                "Runtime.evaluate",
                json!({ "expression": expression, "returnByValue": true }),
            )
            .await;
        result["result"]["value"].clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_chart_of_the_dashboard_shows_data_in_headless_chromium() {
    let Some(browser) = browser() else {
        assert!(
            std::env::var_os("WORLDFLEET_REQUIRE_BROWSER").is_none(),
            "WORLDFLEET_REQUIRE_BROWSER is set but no chromium was found; scripts/test.sh \
             installs Debian's chromium"
        );
        eprintln!(
            "skipped: no chromium on the path and WORLDFLEET_BROWSER unset \
             (scripts/test.sh installs it)"
        );
        return;
    };
    let spec = WorldSpec {
        events: 50_000,
        world_every: 3,
        bad_every: 25,
        ..WorldSpec::small(7)
    };
    let key = spec.gateway_key.clone();
    let data = tempfile::tempdir().unwrap();
    let Served {
        child: server,
        stderr,
        address,
    } = start_serve(
        &["--world"],
        data.path(),
        &format!("gw-synthetic={}", hex::encode(&key)),
    );
    let server = Reaped(server);
    // Keep reading the server's log so it never blocks on a full pipe.
    std::thread::spawn(move || for _ in stderr.lines() {});

    let stop = Arc::new(AtomicBool::new(false));
    let poster = {
        let (address, key, stop) = (address.clone(), key.clone(), Arc::clone(&stop));
        std::thread::spawn(move || post_world(address, key, spec, stop))
    };
    let followers: Vec<_> = (0..3)
        .map(|index| {
            let (address, key, stop) = (address.clone(), key.clone(), Arc::clone(&stop));
            let feed = format!("player:p-{index:06}");
            std::thread::spawn(move || follow(address, key, feed, stop))
        })
        .collect();

    let profile = tempfile::tempdir().unwrap();
    let mut chromium = Command::new(&browser)
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--remote-debugging-port=0",
            "--window-size=1400,1100",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("http://{address}/"))
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap_or_else(|error| panic!("start {}: {error}", browser.display()));
    let mut browser_log = BufReader::new(chromium.stderr.take().unwrap());
    let chromium = Reaped(chromium);
    let devtools_port = loop {
        let mut line = String::new();
        assert!(
            browser_log.read_line(&mut line).unwrap() > 0,
            "chromium exited before opening DevTools"
        );
        if let Some(rest) = line.split("DevTools listening on ws://").nth(1) {
            break rest
                .split(['/', ':'])
                .nth(1)
                .and_then(|port| port.parse::<u16>().ok())
                .unwrap_or_else(|| panic!("no port in {line:?}"));
        }
    };
    std::thread::spawn(move || for _ in browser_log.lines() {});
    let devtools = format!("127.0.0.1:{devtools_port}");
    let page_socket = {
        let started = Instant::now();
        loop {
            let (_, body) = http(&devtools, "GET", "/json/list", "", b"");
            let targets: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
            let page = targets.as_array().and_then(|targets| {
                targets
                    .iter()
                    .find(|target| target["type"] == "page")
                    .and_then(|target| target["webSocketDebuggerUrl"].as_str())
                    .map(str::to_owned)
            });
            if let Some(page) = page {
                break page;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "no page target"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let (socket, _) = tokio_tungstenite::connect_async(page_socket.as_str())
        .await
        .expect("connect to the page's DevTools socket");
    let mut page = DevTools { socket, next_id: 0 };

    let started = Instant::now();
    let empty = loop {
        let empty: Vec<String> = page
            .evaluate(
                "Array.from(document.querySelectorAll('section.chart'))\
                 .filter((chart) => chart.dataset.hasData !== 'true')\
                 .map((chart) => chart.id)",
            )
            .await
            .as_array()
            .map(|ids| {
                ids.iter()
                    .filter_map(|id| id.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_else(|| CHARTS.iter().map(|id| format!("chart-{id}")).collect());
        let drawn = page
            .evaluate("document.querySelectorAll('section.chart').length")
            .await;
        if drawn == json!(CHARTS.len()) && empty.is_empty() {
            break empty;
        }
        if started.elapsed() > DEADLINE {
            break empty;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    // Two more scrapes so the lines have some length in the picture.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let shot = page
        .call("Page.captureScreenshot", json!({ "format": "png" }))
        .await;
    let png = base64::engine::general_purpose::STANDARD
        .decode(shot["data"].as_str().expect("screenshot data"))
        .expect("screenshot is base64");
    let dir = output_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("dashboard.png");
    std::fs::write(&path, &png).unwrap();
    eprintln!("dashboard screenshot: {}", path.display());
    let status = page
        .evaluate("document.getElementById('status').textContent")
        .await;

    stop.store(true, Ordering::Relaxed);
    let posted = poster.join().expect("the poster");
    for follower in followers {
        follower.join().expect("a follower");
    }
    drop(chromium);
    drop(server);
    assert!(png.starts_with(b"\x89PNG"), "the screenshot is not a PNG");
    assert!(posted > 0, "nothing was posted");
    assert!(
        empty.is_empty(),
        "charts still empty after {} s: {empty:?} (page status {status}); screenshot at {}",
        DEADLINE.as_secs(),
        path.display()
    );
}
