//! `sigv4`: the signature checks of the doors, on headers as a client sent them — SigV4 on the
//! SQS-compatible endpoint (`sigv4::parse_authorization`, `parse_amz_date`, `verify`) and the
//! `/v1` request signature (`verify_request`).
//!
//! Input: a request-target line, then `name: value` header lines, an empty line and the body;
//! the two header parsers, public functions of any `&str`, also read the whole input. Properties:
//! nothing panics; a request that fails SigV4 only on its signature passes once it carries the
//! signature the server computes for it (signing and checking agree); a `/v1` request signed
//! with `sign_request` passes `verify_request`.

use axum::http::header::{HeaderName, HeaderValue};
use axum::http::{HeaderMap, Method, Uri};
use worldfleet_serve::sigv4::{expected_signature, parse_amz_date, parse_authorization, verify};
use worldfleet_serve::{sign_request, verify_request};

/// The one gateway the target knows, and its SigV4 secret (a key in lowercase hex).
const GATEWAY: &str = "gw-1";
const SECRET: &str = "00112233445566778899aabbccddeeff";
const WINDOW_MS: u64 = 300_000;

struct Request {
    uri: Uri,
    headers: HeaderMap,
    body: Vec<u8>,
}

/// Splits `data` into a target line, header lines and a body; unusable lines are skipped.
fn request_of(data: &[u8]) -> Request {
    let mut lines = data.split(|&byte| byte == b'\n');
    let uri = lines
        .next()
        .and_then(|line| Uri::try_from(line).ok())
        .unwrap_or_else(|| Uri::from_static("/"));
    let mut headers = HeaderMap::new();
    let mut consumed = data
        .iter()
        .position(|&byte| byte == b'\n')
        .map_or(data.len(), |at| at + 1);
    for line in lines.by_ref() {
        consumed = (consumed + line.len() + 1).min(data.len());
        if line.is_empty() {
            break;
        }
        let Some(colon) = line.iter().position(|&byte| byte == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.trim_ascii()),
            HeaderValue::from_bytes(value),
        ) {
            headers.append(name, value);
        }
    }
    Request {
        uri,
        headers,
        body: data[consumed..].to_vec(),
    }
}

fn secrets_for(gateway: &str) -> Vec<String> {
    if gateway == GATEWAY {
        vec![SECRET.to_owned()]
    } else {
        Vec::new()
    }
}

/// Reads `data` as a request and checks the properties above.
pub fn sigv4(data: &[u8]) {
    // The two header parsers are public functions of any `&str`: the whole input too.
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = parse_authorization(text);
        let _ = parse_amz_date(text);
    }
    let Request { uri, headers, body } = request_of(data);
    let amz_date = headers
        .get("x-amz-date")
        .and_then(|value| value.to_str().ok());
    let now_ms = amz_date.and_then(parse_amz_date).unwrap_or(0);
    let method = Method::POST;
    let outcome = verify(
        &method,
        &uri,
        &headers,
        &body,
        now_ms,
        WINDOW_MS,
        secrets_for,
    );
    if let Ok(gateway) = &outcome {
        assert_eq!(gateway, GATEWAY);
    }

    // Sign the request as the server would, then check it again with that signature.
    if let Some(value) = headers
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        && let Ok(authorization) = parse_authorization(value)
        && !authorization
            .signed_headers
            .iter()
            .any(|name| name == "authorization")
        && let Ok(signature) =
            expected_signature(&authorization, SECRET, &method, &uri, &headers, &body)
    {
        let mut signed = headers.clone();
        let value = format!("{value}, Signature={signature}");
        if let Ok(value) = HeaderValue::from_str(&value) {
            signed.insert("authorization", value);
            if let Err(error) = verify(
                &method,
                &uri,
                &signed,
                &body,
                now_ms,
                WINDOW_MS,
                secrets_for,
            ) {
                assert!(
                    error.code != "SignatureDoesNotMatch" || error.message.contains("date"),
                    "a request carrying the server's own signature is refused: {error:?}"
                );
            }
        }
    }

    // The `/v1` scheme: what `sign_request` signs, `verify_request` accepts.
    let path = uri.path_and_query().map_or("/", |path| path.as_str());
    let timestamp_ms = now_ms;
    let key = SECRET.as_bytes();
    let signature = sign_request(key, "POST", path, timestamp_ms, &body);
    assert!(verify_request(
        key,
        "POST",
        path,
        timestamp_ms,
        &body,
        &signature
    ));
    if let Some(given) = headers
        .get("x-worldfleet-signature")
        .and_then(|value| value.to_str().ok())
        && verify_request(key, "POST", path, timestamp_ms, &body, given)
    {
        assert_eq!(given.trim_matches([' ', '\t']), signature);
    }
}
