//! A local AWS Lambda execution environment for the stage binaries: the Runtime API served on
//! a port of 127.0.0.1, and the built binary started against it with the variables the Lambda
//! service sets for a custom runtime (`provided.al2023`).
//!
//! The protocol is the Runtime API's 2018-06-01 version: the runtime long-polls
//! `GET /2018-06-01/runtime/invocation/next`, which answers with the event and the
//! `Lambda-Runtime-Aws-Request-Id`, `Lambda-Runtime-Deadline-Ms`,
//! `Lambda-Runtime-Invoked-Function-Arn` and `Lambda-Runtime-Trace-Id` headers, then posts the
//! result to `…/invocation/{id}/response` or `…/invocation/{id}/error`; a runtime that cannot
//! start posts to `…/init/error`. One [`LambdaFunction`] is one execution environment: one
//! process, one invocation at a time, as Lambda runs it.

use std::collections::HashMap;
use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

/// Where the stage binaries are: `WORLDFLEET_LAMBDA_BIN_DIR`, else the profile directory this
/// test binary was built into (`<target>/debug`), where the workspace test build puts them.
/// `<target>/debug/<stage>` is whichever build wrote it last: when other checkouts share the
/// target directory, copy the binaries right after building and point the variable at the copy.
pub fn lambda_binary(name: &str) -> PathBuf {
    let dir = match std::env::var_os("WORLDFLEET_LAMBDA_BIN_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => {
            let test_binary = std::env::current_exe().expect("the test binary's path");
            // <target>/<profile>/deps/<test binary>
            test_binary
                .parent()
                .and_then(Path::parent)
                .expect("the test binary lives in <target>/<profile>/deps")
                .to_path_buf()
        }
    };
    let binary = dir.join(name);
    assert!(
        binary.is_file(),
        "{} is not built: run `cargo test --workspace --no-run` first \
         (scripts/test-aws.sh builds every stage binary before this test)",
        binary.display()
    );
    binary
}

/// What the runtime answered to one invocation.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Posted to `/response`: the handler's JSON result.
    Response(Value),
    /// Posted to `/error`: the error type header and the error document.
    Error {
        error_type: Option<String>,
        document: Value,
    },
}

/// One invocation waiting for a runtime to take it.
struct Invocation {
    request_id: String,
    deadline_ms: u128,
    event: Bytes,
}

/// The `/init/error` report of a runtime that could not start.
#[derive(Debug, Clone, PartialEq)]
pub struct InitError {
    pub error_type: Option<String>,
    pub document: Value,
}

struct ApiState {
    function_arn: String,
    /// When the process was started, and whether its first `next` request came yet: the
    /// function's init time is the gap between the two.
    spawned: Mutex<Option<(String, Instant)>>,
    /// The init time, once the first `next` request came.
    init: Mutex<Option<Duration>>,
    queued: tokio::sync::Mutex<mpsc::UnboundedReceiver<Invocation>>,
    awaiting: Mutex<HashMap<String, oneshot::Sender<Outcome>>>,
    init_error: Mutex<Option<InitError>>,
}

/// The Runtime API of one execution environment, on 127.0.0.1 and a port the system picks.
struct RuntimeApi {
    address: SocketAddr,
    state: Arc<ApiState>,
    queue: mpsc::UnboundedSender<Invocation>,
    server: tokio::task::JoinHandle<()>,
}

const API: &str = "/2018-06-01/runtime";

impl RuntimeApi {
    async fn start(function_arn: String) -> std::io::Result<Self> {
        let (queue, queued) = mpsc::unbounded_channel();
        let state = Arc::new(ApiState {
            function_arn,
            spawned: Mutex::new(None),
            init: Mutex::new(None),
            queued: tokio::sync::Mutex::new(queued),
            awaiting: Mutex::new(HashMap::new()),
            init_error: Mutex::new(None),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let app = router(Arc::clone(&state));
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self {
            address,
            state,
            queue,
            server,
        })
    }

    /// Queues `event`; the receiver gets the runtime's answer.
    fn submit(&self, event: Bytes, budget: Duration) -> oneshot::Receiver<Outcome> {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let request_id = format!(
            "{:08x}-0000-4000-8000-{:012x}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let (answer, answered) = oneshot::channel();
        self.state
            .awaiting
            .lock()
            .unwrap()
            .insert(request_id.clone(), answer);
        let deadline_ms = (SystemTime::now() + budget)
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis();
        let _ = self.queue.send(Invocation {
            request_id,
            deadline_ms,
            event,
        });
        answered
    }
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn router(state: Arc<ApiState>) -> Router {
    Router::new()
        .route(&format!("{API}/invocation/next"), get(next_invocation))
        .route(
            &format!("{API}/invocation/{{request_id}}/response"),
            post(invocation_response),
        )
        .route(
            &format!("{API}/invocation/{{request_id}}/error"),
            post(invocation_error),
        )
        .route(&format!("{API}/init/error"), post(init_error))
        .with_state(state)
}

fn error_document(status: StatusCode, message: &str) -> Response {
    (
        status,
        axum::Json(serde_json::json!({"errorType": "InvalidRequest", "errorMessage": message})),
    )
        .into_response()
}

/// Blocks until an invocation is queued, as the Lambda service does between invocations.
async fn next_invocation(State(state): State<Arc<ApiState>>) -> Response {
    if let Some((binary, spawned)) = state.spawned.lock().unwrap().take() {
        let init = spawned.elapsed();
        *state.init.lock().unwrap() = Some(init);
        // Printed for infra/README.md's init-time table (run with --nocapture).
        println!(
            "init {binary}: {:.1} ms from exec to the first /runtime/invocation/next",
            init.as_secs_f64() * 1e3
        );
    }
    let invocation = state.queued.lock().await.recv().await;
    let Some(invocation) = invocation else {
        return error_document(StatusCode::GONE, "the environment is shutting down");
    };
    let mut headers = HeaderMap::new();
    let mut set = |name: &'static str, value: &str| {
        headers.insert(name, value.parse().expect("a valid header value"));
    };
    set("lambda-runtime-aws-request-id", &invocation.request_id);
    set(
        "lambda-runtime-deadline-ms",
        &invocation.deadline_ms.to_string(),
    );
    set("lambda-runtime-invoked-function-arn", &state.function_arn);
    set(
        "lambda-runtime-trace-id",
        "Root=1-00000000-000000000000000000000000;Sampled=0",
    );
    set("content-type", "application/json");
    (StatusCode::OK, headers, invocation.event).into_response()
}

fn finish(state: &ApiState, request_id: &str, outcome: Outcome) -> Response {
    match state.awaiting.lock().unwrap().remove(request_id) {
        Some(answer) => {
            let _ = answer.send(outcome);
            (
                StatusCode::ACCEPTED,
                axum::Json(serde_json::json!({"status": "OK"})),
            )
                .into_response()
        }
        None => error_document(
            StatusCode::BAD_REQUEST,
            &format!("no invocation {request_id} is awaiting an answer"),
        ),
    }
}

fn json_or_text(body: &[u8]) -> Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()))
}

fn error_type(headers: &HeaderMap) -> Option<String> {
    headers
        .get("lambda-runtime-function-error-type")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
}

async fn invocation_response(
    State(state): State<Arc<ApiState>>,
    UrlPath(request_id): UrlPath<String>,
    body: Bytes,
) -> Response {
    finish(&state, &request_id, Outcome::Response(json_or_text(&body)))
}

async fn invocation_error(
    State(state): State<Arc<ApiState>>,
    UrlPath(request_id): UrlPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let outcome = Outcome::Error {
        error_type: error_type(&headers),
        document: json_or_text(&body),
    };
    finish(&state, &request_id, outcome)
}

async fn init_error(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    *state.init_error.lock().unwrap() = Some(InitError {
        error_type: error_type(&headers),
        document: json_or_text(&body),
    });
    (
        StatusCode::ACCEPTED,
        axum::Json(serde_json::json!({"status": "OK"})),
    )
        .into_response()
}

/// A stage binary running in its own local execution environment.
pub struct LambdaFunction {
    name: String,
    api: RuntimeApi,
    process: Child,
    log: PathBuf,
    _log_dir: tempfile::TempDir,
}

impl LambdaFunction {
    /// Starts `binary` as function `name` with the Lambda variables and `env` (which may
    /// override them); every other variable (AWS endpoints and credentials) is inherited.
    /// Variables named in `remove` are taken out of the inherited environment.
    pub async fn start(
        binary: &Path,
        name: &str,
        env: &[(&str, String)],
        remove: &[&str],
    ) -> std::io::Result<Self> {
        let region = std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".into());
        let arn = format!("arn:aws:lambda:{region}:000000000000:function:{name}");
        let api = RuntimeApi::start(arn).await?;
        let log_dir = tempfile::tempdir()?;
        let log = log_dir.path().join(format!("{name}.log"));
        let output = File::create(&log)?;
        let mut command = Command::new(binary);
        command
            .env("AWS_LAMBDA_RUNTIME_API", api.address.to_string())
            .env("AWS_LAMBDA_FUNCTION_NAME", name)
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}"))
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "local/[$LATEST]0")
            .env("AWS_EXECUTION_ENV", "AWS_Lambda_provided.al2023")
            .env("AWS_REGION", &region)
            .env("LAMBDA_TASK_ROOT", "/var/task")
            .stdin(Stdio::null())
            .stdout(output.try_clone()?)
            .stderr(output);
        for variable in remove {
            command.env_remove(variable);
        }
        for (variable, value) in env {
            command.env(variable, value);
        }
        let binary_name = binary.file_name().map_or_else(
            || name.to_owned(),
            |file| file.to_string_lossy().into_owned(),
        );
        *api.state.spawned.lock().unwrap() = Some((binary_name, Instant::now()));
        let process = command.spawn()?;
        Ok(Self {
            name: name.to_owned(),
            api,
            process,
            log,
            _log_dir: log_dir,
        })
    }

    /// Waits up to `within` for the function's init to end (its first `next` request) and
    /// returns its init time. Tests that start several functions wait for each before starting
    /// the next, so that every init time is measured alone, not while siblings compete for
    /// the cores.
    pub async fn wait_ready(&mut self, within: Duration) -> Result<Duration, String> {
        let started = Instant::now();
        loop {
            if let Some(init) = *self.api.state.init.lock().unwrap() {
                return Ok(init);
            }
            if let Some(status) = self.exited() {
                return Err(format!(
                    "{} exited ({status}) during init; log:\n{}",
                    self.name,
                    self.log()
                ));
            }
            if started.elapsed() > within {
                return Err(format!(
                    "{} did not finish its init within {within:?}; log:\n{}",
                    self.name,
                    self.log()
                ));
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// The function's log so far (its JSON tracing lines and anything on stderr).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The exit status, if the process has ended.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.process.try_wait().ok().flatten()
    }

    /// Invokes the function with `event` (a 60 s budget) and waits for its answer; an error
    /// when the process ends or `within` passes first.
    pub async fn invoke(&mut self, event: &Value, within: Duration) -> Result<Outcome, String> {
        let body = Bytes::from(serde_json::to_vec(event).expect("an event serialises"));
        self.invoke_raw(body, within).await
    }

    /// [`invoke`](Self::invoke) with the event's bytes as given (malformed events).
    pub async fn invoke_raw(&mut self, event: Bytes, within: Duration) -> Result<Outcome, String> {
        let mut answered = self.api.submit(event, Duration::from_secs(60));
        let started = Instant::now();
        loop {
            match tokio::time::timeout(Duration::from_millis(200), &mut answered).await {
                Ok(Ok(outcome)) => return Ok(outcome),
                Ok(Err(_)) => return Err(format!("{}: the invocation was dropped", self.name)),
                Err(_) => {}
            }
            if let Some(status) = self.exited() {
                return Err(format!(
                    "{} exited ({status}) before answering; log:\n{}",
                    self.name,
                    self.log()
                ));
            }
            if started.elapsed() > within {
                return Err(format!(
                    "{} did not answer within {within:?}; log:\n{}",
                    self.name,
                    self.log()
                ));
            }
        }
    }

    /// Waits up to `within` for the process to end, returning its status and its
    /// `/init/error` report, if it made one.
    pub async fn wait_for_exit(
        &mut self,
        within: Duration,
    ) -> Result<(ExitStatus, Option<InitError>), String> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.exited() {
                let report = self.api.state.init_error.lock().unwrap().clone();
                return Ok((status, report));
            }
            if started.elapsed() > within {
                return Err(format!(
                    "{} still running after {within:?}; log:\n{}",
                    self.name,
                    self.log()
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for LambdaFunction {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}
