//! A small JSON-over-HTTP/1.1 client for the services stages call (the inference pool, an
//! OpenAI-compatible model server): one connection per call, a deadline over the whole
//! exchange, and failures classified as timeout, throttled, unavailable or permanent so the
//! caller can decide between retrying, tripping a breaker and falling back.
//!
//! Plain `http://` only: the pool and self-hosted model servers sit on a private network; a
//! cloud API over TLS is reached through a local TLS-terminating proxy (see compose's README).

use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Largest answer body read (model answers are a few KB; embeddings of a batch a few hundred).
pub const MAX_RESPONSE_BYTES: usize = 8 * 1024 * 1024;

/// Why a call failed.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum HttpError {
    /// The base URL is not `http://host[:port][/path]`.
    #[error("bad url {url:?}: {reason}")]
    BadUrl { url: String, reason: String },
    /// No answer within the deadline.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The server answered 429: it is shedding load.
    #[error("throttled (429): {0}")]
    Throttled(String),
    /// Connection refused or broken, or a 5xx answer.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// A 4xx answer or an answer that does not decode: retrying will not help.
    #[error("permanent: {0}")]
    Permanent(String),
}

impl HttpError {
    /// Whether the failure says the service is unhealthy (counts against a circuit breaker).
    pub fn is_service_failure(&self) -> bool {
        matches!(
            self,
            Self::Timeout(_) | Self::Throttled(_) | Self::Unavailable(_)
        )
    }
}

/// A parsed `http://host[:port][/prefix]` base URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseUrl {
    host: String,
    port: u16,
    prefix: String,
}

impl BaseUrl {
    /// Parses `url`; a trailing `/` is ignored.
    pub fn parse(url: &str) -> Result<Self, HttpError> {
        let bad = |reason: &str| HttpError::BadUrl {
            url: url.to_owned(),
            reason: reason.to_owned(),
        };
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| bad("only http:// is supported"))?;
        let (authority, path) = match rest.find('/') {
            Some(slash) => rest.split_at(slash),
            None => (rest, ""),
        };
        if authority.is_empty() {
            return Err(bad("no host"));
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) if !host.ends_with(']') || host.starts_with('[') => (
                host,
                port.parse::<u16>()
                    .map_err(|_| bad("port is not a number"))?,
            ),
            _ => (authority, 80),
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        Ok(Self {
            host: host.to_owned(),
            port,
            prefix: path.trim_end_matches('/').to_owned(),
        })
    }

    /// The URL again, for logs.
    pub fn display(&self) -> String {
        format!("http://{}:{}{}", self.host, self.port, self.prefix)
    }
}

/// POSTs `body` as JSON to `base` + `path` with an optional bearer token, and decodes a 2xx
/// answer as `T`, all within `timeout`.
pub async fn post_json<B: Serialize, T: DeserializeOwned>(
    base: &BaseUrl,
    path: &str,
    body: &B,
    bearer: Option<&str>,
    timeout: Duration,
) -> Result<T, HttpError> {
    let payload = serde_json::to_vec(body)
        .map_err(|error| HttpError::Permanent(format!("encode request: {error}")))?;
    let exchange = exchange(base, path, payload, bearer);
    let (status, bytes) = tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| HttpError::Timeout(timeout))??;
    let snippet = || String::from_utf8_lossy(&bytes[..bytes.len().min(300)]).into_owned();
    if status == StatusCode::TOO_MANY_REQUESTS {
        return Err(HttpError::Throttled(snippet()));
    }
    if status.is_server_error() {
        return Err(HttpError::Unavailable(format!("{status}: {}", snippet())));
    }
    if !status.is_success() {
        return Err(HttpError::Permanent(format!("{status}: {}", snippet())));
    }
    serde_json::from_slice(&bytes)
        .map_err(|error| HttpError::Permanent(format!("answer does not decode: {error}")))
}

async fn exchange(
    base: &BaseUrl,
    path: &str,
    payload: Vec<u8>,
    bearer: Option<&str>,
) -> Result<(StatusCode, Bytes), HttpError> {
    let stream = tokio::net::TcpStream::connect((base.host.as_str(), base.port))
        .await
        .map_err(|error| HttpError::Unavailable(format!("connect {}: {error}", base.display())))?;
    let _ = stream.set_nodelay(true);
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|error| HttpError::Unavailable(format!("handshake: {error}")))?;
    // The connection task ends when the exchange does (or with it, on timeout).
    let driver = tokio::spawn(connection);
    let host = if base.port == 80 {
        base.host.clone()
    } else {
        format!("{}:{}", base.host, base.port)
    };
    let mut request = Request::post(format!("{}{path}", base.prefix))
        .header(hyper::header::HOST, host)
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .header(hyper::header::ACCEPT, "application/json");
    if let Some(token) = bearer {
        request = request.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let request = request
        .body(Full::new(Bytes::from(payload)))
        .map_err(|error| HttpError::Permanent(format!("build request: {error}")))?;
    let result = async {
        let response = sender
            .send_request(request)
            .await
            .map_err(|error| HttpError::Unavailable(format!("send: {error}")))?;
        let status = response.status();
        let body = http_body_util::Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|error| HttpError::Unavailable(format!("read answer: {error}")))?
            .to_bytes();
        Ok((status, body))
    }
    .await;
    driver.abort();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_base_urls() {
        let url = BaseUrl::parse("http://pool.internal:8080/v1/").unwrap();
        assert_eq!(url.host, "pool.internal");
        assert_eq!(url.port, 8080);
        assert_eq!(url.prefix, "/v1");
        let url = BaseUrl::parse("http://localhost").unwrap();
        assert_eq!((url.port, url.prefix.as_str()), (80, ""));
        assert!(matches!(
            BaseUrl::parse("https://api.example"),
            Err(HttpError::BadUrl { .. })
        ));
        assert!(BaseUrl::parse("http://:80").is_err());
        assert!(BaseUrl::parse("http://host:notaport").is_err());
    }

    #[tokio::test]
    async fn connection_refused_is_unavailable() {
        // Bind then drop, so the port is (almost certainly) closed.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let base = BaseUrl::parse(&format!("http://127.0.0.1:{port}")).unwrap();
        let error = post_json::<_, serde_json::Value>(
            &base,
            "/x",
            &serde_json::json!({}),
            None,
            Duration::from_secs(2),
        )
        .await
        .unwrap_err();
        assert!(matches!(error, HttpError::Unavailable(_)), "{error}");
        assert!(error.is_service_failure());
    }
}
