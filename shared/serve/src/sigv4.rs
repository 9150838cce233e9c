//! Verifying AWS Signature Version 4 on requests to the SQS-compatible endpoint.
//!
//! A gateway using an AWS SDK signs with **access key id = its gateway id** and **secret
//! access key = its key in lowercase hex** (the same `gateway=hexkey` pair as in
//! `WORLDFLEET_GATEWAY_KEYS`). The server recomputes the signature the standard way (canonical
//! request over the signed headers and the SHA-256 of the body, string to sign, the
//! `AWS4`+secret → date → region → service → `aws4_request` key chain) and compares it in
//! constant time; `x-amz-date` must be within the server's authentication window. Any region
//! is accepted; the service must be `sqs`. Session tokens are ignored. Only the
//! `Authorization` header form is supported (no presigned query strings).

use axum::http::{HeaderMap, Method, Uri};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// Why a SigV4 request was refused; `code` is the AWS error code clients see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigV4Error {
    pub code: &'static str,
    pub message: String,
}

impl SigV4Error {
    fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// The parts of an `Authorization: AWS4-HMAC-SHA256 …` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    pub access_key_id: String,
    pub date: String,
    pub region: String,
    pub service: String,
    pub signed_headers: Vec<String>,
    pub signature: String,
}

/// Parses the `Authorization` header.
pub fn parse_authorization(value: &str) -> Result<Authorization, SigV4Error> {
    let incomplete = |what: &str| {
        SigV4Error::new(
            "IncompleteSignature",
            format!("the Authorization header is not AWS4-HMAC-SHA256 with {what}"),
        )
    };
    let rest = value
        .trim()
        .strip_prefix(ALGORITHM)
        .ok_or_else(|| incomplete("the algorithm first"))?;
    let mut credential = None;
    let mut signed_headers = None;
    let mut signature = None;
    for part in rest.split(',') {
        let Some((name, field)) = part.trim().split_once('=') else {
            continue;
        };
        match name.trim() {
            "Credential" => credential = Some(field.trim().to_owned()),
            "SignedHeaders" => signed_headers = Some(field.trim().to_owned()),
            "Signature" => signature = Some(field.trim().to_owned()),
            _ => {}
        }
    }
    let credential = credential.ok_or_else(|| incomplete("a Credential"))?;
    let signed_headers = signed_headers.ok_or_else(|| incomplete("SignedHeaders"))?;
    let signature = signature.ok_or_else(|| incomplete("a Signature"))?;
    let scope: Vec<&str> = credential.split('/').collect();
    let [access_key_id, date, region, service, terminator] = scope[..] else {
        return Err(incomplete(
            "a Credential of KEY/DATE/REGION/SERVICE/aws4_request",
        ));
    };
    if terminator != "aws4_request" {
        return Err(incomplete("a Credential ending in aws4_request"));
    }
    Ok(Authorization {
        access_key_id: access_key_id.to_owned(),
        date: date.to_owned(),
        region: region.to_owned(),
        service: service.to_owned(),
        signed_headers: signed_headers
            .split(';')
            .map(|name| name.trim().to_ascii_lowercase())
            .collect(),
        signature,
    })
}

/// Unix milliseconds of an `x-amz-date` (`YYYYMMDD'T'HHMMSS'Z'`, ASCII digits only); `None`
/// for anything else.
pub fn parse_amz_date(value: &str) -> Option<u64> {
    let value = value.trim();
    // Checked byte by byte before any slicing: a multi-byte character must not reach a string
    // slice (the fuzzer found `&value[8..9]` panicking on one).
    let well_formed = value.len() == 16
        && value.bytes().enumerate().all(|(index, byte)| match index {
            8 => byte == b'T',
            15 => byte == b'Z',
            _ => byte.is_ascii_digit(),
        });
    if !well_formed {
        return None;
    }
    let number = |range: std::ops::Range<usize>| value.get(range)?.parse::<i64>().ok();
    let (year, month, day) = (number(0..4)?, number(4..6)?, number(6..8)?);
    let (hour, minute, second) = (number(9..11)?, number(11..13)?, number(13..15)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let shifted_year = if month <= 2 { year - 1 } else { year };
    let era = shifted_year.div_euclid(400);
    let year_of_era = shifted_year - era * 400;
    let month_index = (month + 9) % 12;
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = era * 146_097 + day_of_era - 719_468;
    let secs = days * 86_400 + hour * 3_600 + minute * 60 + second;
    u64::try_from(secs).ok().map(|secs| secs * 1000)
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC accepts every key length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

fn canonical_query(uri: &Uri) -> String {
    let mut pairs: Vec<(String, String)> = uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((name, value)) => (name.to_owned(), value.to_owned()),
            None => (pair.to_owned(), String::new()),
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// The signature of the request under `secret`, as the client should have computed it.
pub fn expected_signature(
    authorization: &Authorization,
    secret: &str,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<String, SigV4Error> {
    let mut canonical_headers = String::new();
    for name in &authorization.signed_headers {
        let values: Vec<String> = headers
            .get_all(name.as_str())
            .iter()
            .map(|value| {
                String::from_utf8_lossy(value.as_bytes())
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        if values.is_empty() {
            return Err(SigV4Error::new(
                "IncompleteSignature",
                format!("signed header {name} is not in the request"),
            ));
        }
        canonical_headers.push_str(&format!("{name}:{}\n", values.join(",")));
    }
    let payload_hash = match headers
        .get("x-amz-content-sha256")
        .and_then(|value| value.to_str().ok())
    {
        Some("UNSIGNED-PAYLOAD") => {
            return Err(SigV4Error::new(
                "IncompleteSignature",
                "unsigned payloads are not accepted; the body is part of what is signed",
            ));
        }
        _ => hex::encode(Sha256::digest(body)),
    };
    let path = if uri.path().is_empty() {
        "/"
    } else {
        uri.path()
    };
    let canonical_request = format!(
        "{method}\n{path}\n{}\n{canonical_headers}\n{}\n{payload_hash}",
        canonical_query(uri),
        authorization.signed_headers.join(";"),
    );
    let amz_date = headers
        .get("x-amz-date")
        .and_then(|value| value.to_str().ok())
        .unwrap_or("");
    let scope = format!(
        "{}/{}/{}/aws4_request",
        authorization.date, authorization.region, authorization.service
    );
    let string_to_sign = format!(
        "{ALGORITHM}\n{amz_date}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical_request.as_bytes()))
    );
    let key = [
        authorization.date.as_str(),
        authorization.region.as_str(),
        authorization.service.as_str(),
        "aws4_request",
    ]
    .iter()
    .fold(format!("AWS4{secret}").into_bytes(), |key, part| {
        hmac(&key, part.as_bytes())
    });
    Ok(hex::encode(hmac(&key, string_to_sign.as_bytes())))
}

/// Checks a SigV4-signed request: the header parses, `x-amz-date` is within `window_ms` of
/// `now_ms` and matches the credential's date, the service is `sqs`, and the signature under
/// one of the secrets that `secrets_for(access_key_id)` returns (a gateway's active keys: two
/// during a rotation) matches. Returns the access key id.
pub fn verify(
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    now_ms: u64,
    window_ms: u64,
    secrets_for: impl Fn(&str) -> Vec<String>,
) -> Result<String, SigV4Error> {
    let value = headers
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        .ok_or_else(|| {
            SigV4Error::new(
                "MissingAuthenticationToken",
                "the request is not signed; sign it with SigV4 (access key id = gateway id, \
                 secret = the gateway's hex key)",
            )
        })?;
    let authorization = parse_authorization(value)?;
    let secrets = secrets_for(&authorization.access_key_id);
    if secrets.is_empty() {
        return Err(SigV4Error::new(
            "InvalidClientTokenId",
            format!(
                "no key is configured for gateway {:?} (the access key id)",
                authorization.access_key_id
            ),
        ));
    }
    if authorization.service != "sqs" {
        return Err(SigV4Error::new(
            "IncompleteSignature",
            format!(
                "signed for service {:?}; this endpoint is sqs",
                authorization.service
            ),
        ));
    }
    let amz_date = headers
        .get("x-amz-date")
        .and_then(|value| value.to_str().ok())
        .ok_or_else(|| SigV4Error::new("IncompleteSignature", "the request has no x-amz-date"))?;
    let signed_ms = parse_amz_date(amz_date)
        .ok_or_else(|| SigV4Error::new("IncompleteSignature", "x-amz-date does not parse"))?;
    if !amz_date.starts_with(&authorization.date) {
        return Err(SigV4Error::new(
            "SignatureDoesNotMatch",
            "the credential's date is not the date of x-amz-date",
        ));
    }
    if now_ms.abs_diff(signed_ms) > window_ms {
        return Err(SigV4Error::new(
            "RequestExpired",
            format!(
                "the request was signed {} s from the server clock; the window is ±{} s",
                now_ms.abs_diff(signed_ms) / 1000,
                window_ms / 1000
            ),
        ));
    }
    let mut matched = false;
    for secret in &secrets {
        let expected = expected_signature(&authorization, secret, method, uri, headers, body)?;
        matched |= bool::from(
            expected
                .as_bytes()
                .ct_eq(authorization.signature.as_bytes()),
        );
    }
    if matched {
        Ok(authorization.access_key_id)
    } else {
        Err(SigV4Error::new(
            "SignatureDoesNotMatch",
            "the SigV4 signature does not match (the secret access key must be the gateway's \
             key in lowercase hex)",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amz_dates_parse_to_unix_milliseconds() {
        assert_eq!(parse_amz_date("19700101T000000Z"), Some(0));
        assert_eq!(parse_amz_date("20151028T003000Z"), Some(1_445_992_200_000));
        assert_eq!(parse_amz_date("20000301T000000Z"), Some(951_868_800_000));
        assert_eq!(parse_amz_date("2015-10-28"), None);
        assert_eq!(parse_amz_date("20151328T003000Z"), None);
        // Sixteen bytes, but not the shape: no panic, no lenient reading of signs.
        assert_eq!(parse_amz_date("pra-xm:%\u{10f35e}-xm:"), None);
        assert_eq!(parse_amz_date("2015102\u{e9}003000Z"), None);
        assert_eq!(parse_amz_date("201510+1T003000Z"), None);
        assert_eq!(parse_amz_date("+0151028T003000Z"), None);
    }

    /// The `get-vanilla` case of the AWS SigV4 test suite (secret, scope and expected
    /// signature as AWS publishes them), with the service checked by the caller only.
    #[test]
    fn matches_the_aws_test_suite_vanilla_request() {
        let authorization = parse_authorization(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders=host;x-amz-date, \
             Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
        )
        .unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("host", "example.amazonaws.com".parse().unwrap());
        headers.insert("x-amz-date", "20150830T123600Z".parse().unwrap());
        let signature = expected_signature(
            &authorization,
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            &Method::GET,
            &"/".parse().unwrap(),
            &headers,
            b"",
        )
        .unwrap();
        assert_eq!(signature, authorization.signature);
    }

    #[test]
    fn refuses_unknown_keys_missing_headers_and_other_services() {
        let headers = HeaderMap::new();
        let uri: Uri = "/".parse().unwrap();
        let error = verify(&Method::POST, &uri, &headers, b"", 0, 1, |_| Vec::new()).unwrap_err();
        assert_eq!(error.code, "MissingAuthenticationToken");
        let mut headers = HeaderMap::new();
        headers.insert(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=gw/20150830/us-east-1/sqs/aws4_request, \
             SignedHeaders=host, Signature=00"
                .parse()
                .unwrap(),
        );
        let error = verify(&Method::POST, &uri, &headers, b"", 0, 1, |_| Vec::new()).unwrap_err();
        assert_eq!(error.code, "InvalidClientTokenId");
        let error = verify(&Method::POST, &uri, &headers, b"", 0, 1, |_| {
            vec!["k".into()]
        })
        .unwrap_err();
        assert_eq!(error.code, "IncompleteSignature", "{error:?}");
        headers.insert("authorization", "Basic abc".parse().unwrap());
        let error = verify(&Method::POST, &uri, &headers, b"", 0, 1, |_| {
            vec!["k".into()]
        })
        .unwrap_err();
        assert_eq!(error.code, "IncompleteSignature");
    }
}
