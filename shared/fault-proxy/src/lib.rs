//! A fault-injecting HTTP proxy for the local AWS emulators.
//!
//! LocalStack's SQS and DynamoDB Local never throttle and never fail, so on them the AWS
//! adapters' retries and the stages' idempotency under ambiguous failures go untested. A
//! [`FaultProxy`] listens on loopback in front of one emulator; SDK clients are pointed at it
//! through their endpoint URL, so every request crosses a real socket and every injected
//! error is parsed by the SDK's own protocol code. Per request it draws (seeded, at the
//! configured [`FaultRates`]) one of:
//!
//! - **throttle**: HTTP 400 with the service's throttling error (DynamoDB
//!   `ProvisionedThroughputExceededException` or `ThrottlingException`, SQS
//!   `RequestThrottled`), never forwarded;
//! - **server error**: HTTP 500 (`InternalServerError` / `InternalError`), never forwarded;
//! - **timeout**: the request is held past the client's attempt timeout, then the connection
//!   is closed; never forwarded;
//! - **lost response**: the request *is* forwarded and applied, then its response is held past
//!   the client's timeout and dropped, so the client cannot tell that it took effect;
//! - **unprocessed** (`BatchWriteItem`, `BatchGetItem` only): between one and all of the
//!   batch's entries are held back and returned as `UnprocessedItems` / `UnprocessedKeys`,
//!   the rest forwarded.
//!
//! Everything else is forwarded byte for byte. [`FaultProxy::report`] counts requests and
//! faults per operation. Test tooling only: nothing in a run mode depends on this crate.

pub mod batch;
pub mod call;
pub mod plan;
mod report;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{CONTENT_LENGTH, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rand::Rng;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

pub use call::{Call, Protocol, Service};
pub use plan::{Fault, FaultPlan, FaultRates};
pub use report::{FaultCounts, FaultReport};

/// Where a proxy forwards to and how it faults.
#[derive(Debug, Clone, PartialEq)]
pub struct ProxyConfig {
    /// The emulator: `http://host:port` (plain HTTP only).
    pub upstream: String,
    /// How often each fault is injected.
    pub rates: FaultRates,
    /// Seed of the fault draws.
    pub seed: u64,
    /// How long a timed-out request or a lost response is held before the connection is
    /// closed; make it longer than the clients' attempt timeout.
    pub hold: Duration,
}

impl ProxyConfig {
    /// A proxy in front of `upstream` with `rates`, seed 0 and a 5 s hold.
    pub fn new(upstream: &str, rates: FaultRates) -> Self {
        Self {
            upstream: upstream.to_owned(),
            rates,
            seed: 0,
            hold: Duration::from_secs(5),
        }
    }
}

/// A running proxy on a loopback port; stops when dropped.
pub struct FaultProxy {
    address: SocketAddr,
    state: Arc<State>,
    accept: tokio::task::JoinHandle<()>,
}

struct State {
    host: String,
    port: u16,
    plan: FaultPlan,
    hold: Duration,
    counts: Mutex<BTreeMap<String, FaultCounts>>,
}

/// What a handler does with a request whose answer is to be dropped: the error closes the
/// connection without a response.
#[derive(Debug)]
struct Dropped;

impl std::fmt::Display for Dropped {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("response dropped by the fault proxy")
    }
}

impl std::error::Error for Dropped {}

impl FaultProxy {
    /// Starts a proxy on `127.0.0.1:0` (a free port). Must run inside a Tokio runtime.
    pub async fn start(config: ProxyConfig) -> std::io::Result<FaultProxy> {
        let invalid =
            |reason: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, reason);
        config.rates.validate().map_err(invalid)?;
        let (host, port) = parse_upstream(&config.upstream).map_err(invalid)?;
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let address = listener.local_addr()?;
        let state = Arc::new(State {
            host,
            port,
            plan: FaultPlan::new(config.rates, config.seed),
            hold: config.hold,
            counts: Mutex::new(BTreeMap::new()),
        });
        let accept = tokio::spawn(accept_loop(listener, Arc::clone(&state)));
        Ok(FaultProxy {
            address,
            state,
            accept,
        })
    }

    /// The address it listens on.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The endpoint URL to give SDK clients (`http://127.0.0.1:<port>`).
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Requests and faults so far, per operation.
    pub fn report(&self) -> FaultReport {
        FaultReport {
            by_operation: self.state.counts().clone(),
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        // The accept task owns the connection tasks, so this ends them too.
        self.accept.abort();
    }
}

fn parse_upstream(upstream: &str) -> Result<(String, u16), String> {
    let rest = upstream
        .strip_prefix("http://")
        .ok_or_else(|| format!("upstream {upstream:?} is not an http:// URL"))?;
    let authority = rest.split('/').next().unwrap_or(rest);
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) => (
            host,
            port.parse()
                .map_err(|_| format!("upstream {upstream:?} has a bad port"))?,
        ),
        None => (authority, 80),
    };
    if host.is_empty() {
        return Err(format!("upstream {upstream:?} has no host"));
    }
    Ok((host.to_owned(), port))
}

async fn accept_loop(listener: TcpListener, state: Arc<State>) {
    let mut connections = JoinSet::new();
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::debug!(%error, "fault proxy: accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let state = Arc::clone(&state);
        connections.spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let state = Arc::clone(&state);
                async move { state.handle(request).await }
            });
            // A dropped answer ends the connection with an error: expected, not reported.
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
        // Reap finished connections so the set does not grow with every connection served.
        while connections.try_join_next().is_some() {}
    }
}

impl State {
    fn counts(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, FaultCounts>> {
        self.counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn count(&self, call: &Call, update: impl FnOnce(&mut FaultCounts)) {
        update(self.counts().entry(call.label()).or_default());
    }

    async fn handle(&self, request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Dropped> {
        let (parts, body) = request.into_parts();
        let body = match body.collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(_) => return Err(Dropped),
        };
        let call = Call::recognise(&parts.headers, &body);
        let fault = self.plan.decide(call.is_partial_batch_candidate());
        self.count(&call, |counts| counts.requests += 1);
        let request = Request::from_parts(parts, body);
        match fault {
            None => Ok(self.forward(&call, request).await),
            Some(fault @ (Fault::Throttle | Fault::ServerError)) => {
                self.count(&call, |counts| counts.add(fault));
                let alternate = self.plan.with_rng(|rng| rng.random_bool(0.5));
                Ok(call.error_response(fault, alternate))
            }
            Some(Fault::Timeout) => {
                self.count(&call, |counts| counts.add(Fault::Timeout));
                tokio::time::sleep(self.hold).await;
                Err(Dropped)
            }
            Some(Fault::LostResponse) => {
                self.count(&call, |counts| counts.add(Fault::LostResponse));
                let _applied = self.forward(&call, request).await;
                tokio::time::sleep(self.hold).await;
                Err(Dropped)
            }
            Some(Fault::Unprocessed) => Ok(self.partial_batch(&call, request).await),
        }
    }

    /// Forwards part of a batch and answers with the rest unprocessed.
    async fn partial_batch(&self, call: &Call, request: Request<Bytes>) -> Response<Full<Bytes>> {
        let cut = self
            .plan
            .with_rng(|rng| batch::split(&call.operation, request.body(), rng));
        let Some(cut) = cut else {
            // Not a batch with entries after all: nothing to hold back.
            return self.forward(call, request).await;
        };
        self.count(call, |counts| {
            counts.add(Fault::Unprocessed);
            counts.entries_held_back += cut.held_back as u64;
        });
        let Some(forward) = cut.forward else {
            let body =
                batch::nothing_processed(&call.operation, &cut.unprocessed).unwrap_or_default();
            return Response::builder()
                .status(StatusCode::OK)
                .header("content-type", "application/x-amz-json-1.0")
                .body(Full::new(Bytes::from(body)))
                .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())));
        };
        let (mut parts, _) = request.into_parts();
        parts
            .headers
            .insert(CONTENT_LENGTH, HeaderValue::from(forward.len()));
        let response = self
            .forward(call, Request::from_parts(parts, Bytes::from(forward)))
            .await;
        if response.status() != StatusCode::OK {
            return response;
        }
        let (mut parts, body) = response.into_parts();
        let Ok(collected) = body.collect().await;
        let bytes = collected.to_bytes();
        match batch::merge(&call.operation, &bytes, &cut.unprocessed) {
            Some(merged) => {
                // The body changed: its length did, and a checksum of the old one would lie.
                parts.headers.remove("x-amz-crc32");
                parts
                    .headers
                    .insert(CONTENT_LENGTH, HeaderValue::from(merged.len()));
                Response::from_parts(parts, Full::new(Bytes::from(merged)))
            }
            None => Response::from_parts(parts, Full::new(bytes)),
        }
    }

    /// Sends `request` to the upstream on a fresh connection and returns its answer (502
    /// when the upstream cannot be reached).
    async fn forward(&self, call: &Call, request: Request<Bytes>) -> Response<Full<Bytes>> {
        self.count(call, |counts| counts.forwarded += 1);
        match self.exchange(request).await {
            Ok(response) => response,
            Err(reason) => {
                tracing::warn!(upstream = %self.host, port = self.port, reason, "fault proxy: upstream failed");
                self.count(call, |counts| counts.upstream_errors += 1);
                Response::builder()
                    .status(StatusCode::BAD_GATEWAY)
                    .body(Full::new(Bytes::from(reason)))
                    .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
            }
        }
    }

    async fn exchange(&self, request: Request<Bytes>) -> Result<Response<Full<Bytes>>, String> {
        let stream = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|error| format!("connect: {error}"))?;
        let _ = stream.set_nodelay(true);
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|error| format!("handshake: {error}"))?;
        let driver = tokio::spawn(connection);
        let result = async {
            let (parts, body) = request.into_parts();
            let response = sender
                .send_request(Request::from_parts(parts, Full::new(body)))
                .await
                .map_err(|error| format!("send: {error}"))?;
            let (parts, body) = response.into_parts();
            let body = body
                .collect()
                .await
                .map_err(|error| format!("read answer: {error}"))?
                .to_bytes();
            Ok(Response::from_parts(parts, Full::new(body)))
        }
        .await;
        driver.abort();
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstreams_are_plain_http_host_and_port() {
        assert_eq!(
            parse_upstream("http://127.0.0.1:8000").unwrap(),
            ("127.0.0.1".to_owned(), 8000)
        );
        assert_eq!(
            parse_upstream("http://localhost/").unwrap(),
            ("localhost".to_owned(), 80)
        );
        assert!(parse_upstream("https://x:1").is_err());
        assert!(parse_upstream("http://:1").is_err());
        assert!(parse_upstream("http://x:port").is_err());
    }
}
