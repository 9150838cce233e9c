//! Request authentication and per-gateway rate limits for every `/v1` route.
//!
//! A request is signed by its gateway with the key intake already holds for it
//! (`WORLDFLEET_GATEWAY_KEYS`): HMAC-SHA256 over
//!
//! ```text
//! METHOD \n PATH_AND_QUERY \n TIMESTAMP_MS \n hex(sha256(BODY))
//! ```
//!
//! (no spaces; `PATH_AND_QUERY` exactly as sent on the request line, percent-encoding
//! included), in the headers [`GATEWAY_HEADER`], [`TIMESTAMP_HEADER`] and [`SIGNATURE_HEADER`]
//! (lowercase hex). The timestamp must be within the configured window (±300 s) of the server
//! clock; signatures are compared in constant time. A captured request can be replayed within
//! the window: that is harmless for the routes there are (events are deduplicated by event id,
//! checkpoints only move forward, reads are reads). Keys are never logged or echoed.
//!
//! After authentication each gateway spends one token of its bucket per request; an empty
//! bucket answers 429 with `Retry-After`. Unauthenticated requests spend nobody's tokens.

use std::collections::HashMap;
use std::sync::Mutex;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::ServeState;
use crate::error::ApiError;

/// The header naming the gateway whose key signed the request.
pub const GATEWAY_HEADER: &str = "x-worldfleet-gateway";
/// The header holding the signing time, Unix milliseconds.
pub const TIMESTAMP_HEADER: &str = "x-worldfleet-timestamp";
/// The header holding the lowercase hex HMAC-SHA256.
pub const SIGNATURE_HEADER: &str = "x-worldfleet-signature";

type HmacSha256 = Hmac<Sha256>;

/// The gateway a request was authenticated as (a request extension set by [`authenticate`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gateway(pub String);

/// The bytes that are signed: `METHOD\nPATH_AND_QUERY\nTIMESTAMP_MS\nhex(sha256(BODY))`.
pub fn string_to_sign(
    method: &str,
    path_and_query: &str,
    timestamp_ms: u64,
    body: &[u8],
) -> String {
    format!(
        "{method}\n{path_and_query}\n{timestamp_ms}\n{}",
        hex::encode(Sha256::digest(body))
    )
}

/// The signature a gateway sends: lowercase hex HMAC-SHA256 of [`string_to_sign`] under `key`.
pub fn sign_request(
    key: &[u8],
    method: &str,
    path_and_query: &str,
    timestamp_ms: u64,
    body: &[u8],
) -> String {
    // HMAC takes keys of any length, so this cannot fail.
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC accepts every key length");
    mac.update(string_to_sign(method, path_and_query, timestamp_ms, body).as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// True when `signature_hex` is the signature of the request under `key`, compared in
/// constant time. Only the form [`sign_request`] writes is accepted — 64 lowercase hex
/// characters (HTTP's optional whitespace around a header value aside) — so one request has
/// one signature, as with envelope signatures; anything else is simply false.
pub fn verify_request(
    key: &[u8],
    method: &str,
    path_and_query: &str,
    timestamp_ms: u64,
    body: &[u8],
    signature_hex: &str,
) -> bool {
    let signature_hex = signature_hex.trim_matches([' ', '\t']);
    if signature_hex.len() != 64
        || !signature_hex
            .bytes()
            .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte))
    {
        return false;
    }
    let Ok(given) = hex::decode(signature_hex) else {
        return false;
    };
    let Ok(mut mac) = HmacSha256::new_from_slice(key) else {
        return false;
    };
    mac.update(string_to_sign(method, path_and_query, timestamp_ms, body).as_bytes());
    let expected = mac.finalize().into_bytes();
    expected.as_slice().ct_eq(&given).into()
}

/// Per-gateway token buckets, refilled continuously from the clock port.
#[derive(Debug)]
pub struct RateLimiter {
    burst: f64,
    per_second: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated_ms: u64,
}

impl RateLimiter {
    /// Buckets of `burst` tokens refilled at `per_second`; `per_second == 0` never limits.
    pub fn new(burst: u32, per_second: u32) -> Self {
        Self {
            burst: f64::from(burst.max(1)),
            per_second: f64::from(per_second),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token of `gateway`'s bucket at `now_ms`: `Ok` when there was one, else
    /// `Err(seconds until there is)`, at least 1.
    pub fn take(&self, gateway: &str, now_ms: u64) -> Result<(), u64> {
        if self.per_second <= 0.0 {
            return Ok(());
        }
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let bucket = buckets.entry(gateway.to_owned()).or_insert(Bucket {
            tokens: self.burst,
            updated_ms: now_ms,
        });
        let elapsed_secs = now_ms.saturating_sub(bucket.updated_ms) as f64 / 1000.0;
        bucket.tokens = (bucket.tokens + elapsed_secs * self.per_second).min(self.burst);
        bucket.updated_ms = bucket.updated_ms.max(now_ms);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            let wait = ((1.0 - bucket.tokens) / self.per_second).ceil() as u64;
            Err(wait.max(1))
        }
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &'static str) -> Result<&'a str, ApiError> {
    let value = headers.get(name).ok_or_else(|| {
        ApiError::unauthorized(
            "missing_header",
            format!("the request has no {name} header; sign every /v1 request (see the README)"),
        )
    })?;
    value.to_str().map_err(|_| {
        ApiError::unauthorized(
            "bad_header",
            format!("the {name} header is not printable ASCII"),
        )
    })
}

/// Reads at most `limit` bytes of `body`; 413 beyond.
pub async fn read_body(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("the request body is over the {limit}-byte limit; send fewer envelopes"),
        )
    };
    match axum::body::to_bytes(body, limit).await {
        Ok(bytes) => Ok(bytes),
        Err(error) => {
            if error.into_inner().is::<http_body_util::LengthLimitError>() {
                Err(too_large())
            } else {
                Err(ApiError::bad_request(
                    "body_unreadable",
                    "the request body could not be read to its end",
                ))
            }
        }
    }
}

/// Middleware: authenticates the request as a gateway, then rate-limits that gateway. The
/// body is read here (it is part of what is signed, and capped at the configured size) and
/// handed on unchanged, with the [`Gateway`] as an extension.
pub async fn authenticate(
    State(state): State<ServeState>,
    request: Request,
    next: Next,
) -> Response {
    match check(&state, request).await {
        Ok(request) => next.run(request).await,
        Err(error) => error.into_response(),
    }
}

async fn check(state: &ServeState, request: Request) -> Result<Request, ApiError> {
    let (mut parts, body) = request.into_parts();
    let gateway = header(&parts.headers, GATEWAY_HEADER)?.to_owned();
    let timestamp = header(&parts.headers, TIMESTAMP_HEADER)?.to_owned();
    let signature = header(&parts.headers, SIGNATURE_HEADER)?.to_owned();
    // Keys from a secret are read again once their refresh interval has passed.
    state.inner.gateways.refresh_if_due().await;
    // Every active key of the gateway: the new one and the old one during a rotation.
    let keys = state.inner.gateways.keys_of(&gateway);
    if keys.is_empty() {
        return Err(ApiError::unauthorized(
            "unknown_gateway",
            format!("no key is configured for gateway {gateway:?}"),
        ));
    }
    let timestamp_ms: u64 = timestamp.trim().parse().map_err(|_| {
        ApiError::unauthorized(
            "bad_timestamp",
            format!("{TIMESTAMP_HEADER} is not Unix milliseconds"),
        )
    })?;
    let now_ms = state.inner.clock.now_ms();
    let window_ms = state.inner.config.auth_window.as_millis() as u64;
    if now_ms.abs_diff(timestamp_ms) > window_ms {
        return Err(ApiError::unauthorized(
            "expired_timestamp",
            format!(
                "{TIMESTAMP_HEADER} is {} s from the server clock; the window is ±{} s \
                 (sign each request when it is sent, and check the gateway's clock)",
                now_ms.abs_diff(timestamp_ms) / 1000,
                window_ms / 1000
            ),
        ));
    }
    if let Some(length) = parts
        .headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok())
        && length > state.inner.config.max_body_bytes as u64
    {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!(
                "the request body is {length} bytes, over the {}-byte limit; send fewer \
                 envelopes",
                state.inner.config.max_body_bytes
            ),
        ));
    }
    let bytes = read_body(body, state.inner.config.max_body_bytes).await?;
    let path_and_query = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path().to_owned(), ToString::to_string);
    if !keys.iter().any(|key| {
        verify_request(
            key.as_bytes(),
            parts.method.as_str(),
            &path_and_query,
            timestamp_ms,
            &bytes,
            &signature,
        )
    }) {
        tracing::info!(gateway = %gateway, path = %parts.uri.path(), "request refused: bad signature");
        return Err(ApiError::unauthorized(
            "bad_signature",
            "the request signature does not match (wrong key, or the method, path, timestamp \
             or body differ from what was signed)",
        ));
    }
    if let Err(wait_secs) = state.inner.limiter.take(&gateway, now_ms) {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("gateway {gateway:?} is over its request rate; retry in {wait_secs} s"),
        )
        .retry_after(wait_secs));
    }
    parts.extensions.insert(Gateway(gateway));
    Ok(Request::from_parts(parts, Body::from(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_and_any_change_breaks_it() {
        let key = b"0123456789abcdef";
        let signature = sign_request(key, "POST", "/v1/events", 1_000, b"{}");
        assert!(verify_request(
            key,
            "POST",
            "/v1/events",
            1_000,
            b"{}",
            &signature
        ));
        assert!(!verify_request(
            key,
            "PUT",
            "/v1/events",
            1_000,
            b"{}",
            &signature
        ));
        assert!(!verify_request(
            key,
            "POST",
            "/v1/events?x=1",
            1_000,
            b"{}",
            &signature
        ));
        assert!(!verify_request(
            key,
            "POST",
            "/v1/events",
            1_001,
            b"{}",
            &signature
        ));
        assert!(!verify_request(
            key,
            "POST",
            "/v1/events",
            1_000,
            b"[]",
            &signature
        ));
        assert!(!verify_request(
            b"another key 1234",
            "POST",
            "/v1/events",
            1_000,
            b"{}",
            &signature
        ));
        assert!(!verify_request(
            key,
            "POST",
            "/v1/events",
            1_000,
            b"{}",
            "zz"
        ));
        assert!(!verify_request(
            key,
            "POST",
            "/v1/events",
            1_000,
            b"{}",
            &signature[..10]
        ));
    }

    #[test]
    fn only_the_lowercase_form_verifies() {
        let key = b"0123456789abcdef";
        let signature = sign_request(key, "POST", "/v1/events", 1_000, b"{}");
        let verify = |given: &str| verify_request(key, "POST", "/v1/events", 1_000, b"{}", given);
        assert!(verify(&format!(" {signature}\t")), "header whitespace");
        assert!(!verify(&signature.to_ascii_uppercase()));
        assert!(!verify(&format!("{signature}\n")));
        assert!(!verify(&format!("{signature}00")));
    }

    #[test]
    fn the_string_to_sign_is_the_documented_one() {
        assert_eq!(
            string_to_sign("GET", "/v1/feeds/player:p-1?after=3", 42, b""),
            "GET\n/v1/feeds/player:p-1?after=3\n42\n\
             e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn a_bucket_empties_and_refills_with_time() {
        let limiter = RateLimiter::new(2, 1);
        assert!(limiter.take("gw", 0).is_ok());
        assert!(limiter.take("gw", 0).is_ok());
        assert_eq!(limiter.take("gw", 0), Err(1));
        assert!(limiter.take("other", 0).is_ok(), "buckets are per gateway");
        assert!(limiter.take("gw", 1_000).is_ok());
        assert!(RateLimiter::new(1, 0).take("gw", 0).is_ok());
    }
}
