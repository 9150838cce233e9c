//! `json`: the strict JSON reader every envelope goes through (`worldfleet_domain::json`).
//!
//! Properties: it never panics; what it accepts, `serde_json` reads to the same value; what it
//! refuses that `serde_json` accepts is a duplicate member name (the one thing it adds); and
//! the RFC 8785 canonical form of an accepted value is read back by it and is a fixed point.

use serde_json::Value;
use worldfleet_domain::DomainError;
use worldfleet_domain::envelope::canonical_bytes;
use worldfleet_domain::json::{parse_object, parse_value};

/// Reads `data` with the strict reader and checks the properties above.
pub fn json(data: &[u8]) {
    let strict = parse_value(data);
    let lenient = serde_json::from_slice::<Value>(data);
    assert_eq!(
        parse_object(data).is_ok(),
        matches!(strict, Ok(Value::Object(_)))
    );
    match (&strict, &lenient) {
        (Ok(strict), Ok(lenient)) => assert_eq!(strict, lenient),
        (Ok(_), Err(error)) => panic!("strict reader accepts what serde_json refuses: {error}"),
        (Err(DomainError::Malformed(reason)), Ok(_)) => assert!(
            reason.contains("duplicate member name"),
            "strict reader refuses a document serde_json reads: {reason}"
        ),
        (Err(DomainError::Malformed(_)), Err(_)) => {}
        (Err(other), _) => panic!("the reader's errors are all `Malformed`: {other:?}"),
    }
    let Ok(value) = strict else { return };
    let Ok(canonical) = canonical_bytes(&value) else {
        return;
    };
    let reread = parse_value(&canonical).expect("canonical JSON reads back");
    let twice = canonical_bytes(&reread).expect("canonical JSON canonicalises");
    assert_eq!(canonical, twice, "canonical form is not a fixed point");
}
