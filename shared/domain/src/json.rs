//! The one JSON reader for envelopes: strict where `serde_json` is lenient.
//!
//! `serde_json` keeps the *last* of two members with the same name. RFC 8785 (which the
//! signature is computed over) and I-JSON (RFC 7493) forbid duplicate names, and a document
//! that has them means different things to different parsers: a gateway's JSON library may
//! sign the first `actor` while intake reads the last. So every place that reads an envelope —
//! intake's parse and its sender hints, the HTTP door's transport keys, `worldfleet send` —
//! reads it through [`parse_value`], which refuses a repeated member name at any depth.
//!
//! Nesting is bounded by `serde_json`'s recursion limit (128 levels), so a hostile
//! 10,000-level document is refused without exhausting the stack.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use crate::error::{DomainError, Result};

/// Parses `raw` as JSON, refusing duplicate member names at any depth (and anything
/// `serde_json` refuses: invalid UTF-8, trailing data, numbers out of range, nesting deeper
/// than 128 levels).
pub fn parse_value(raw: &[u8]) -> Result<Value> {
    serde_json::from_slice::<Strict>(raw)
        .map(|strict| strict.0)
        .map_err(|error| DomainError::Malformed(format!("not JSON: {error}")))
}

/// [`parse_value`], requiring a JSON object.
pub fn parse_object(raw: &[u8]) -> Result<Map<String, Value>> {
    match parse_value(raw)? {
        Value::Object(object) => Ok(object),
        _ => Err(DomainError::Malformed("not a JSON object".to_owned())),
    }
}

/// A [`Value`] built by a visitor that refuses a member name its object already has.
struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("any JSON value")
    }

    fn visit_bool<E>(self, value: bool) -> std::result::Result<Value, E> {
        Ok(Value::Bool(value))
    }

    fn visit_i64<E>(self, value: i64) -> std::result::Result<Value, E> {
        Ok(Value::Number(value.into()))
    }

    fn visit_u64<E>(self, value: u64) -> std::result::Result<Value, E> {
        Ok(Value::Number(value.into()))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> std::result::Result<Value, E> {
        Number::from_f64(value)
            .map(Value::Number)
            .ok_or_else(|| E::custom("number out of range"))
    }

    fn visit_str<E>(self, value: &str) -> std::result::Result<Value, E> {
        Ok(Value::String(value.to_owned()))
    }

    fn visit_string<E>(self, value: String) -> std::result::Result<Value, E> {
        Ok(Value::String(value))
    }

    fn visit_unit<E>(self) -> std::result::Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(Strict(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(name) = map.next_key::<String>()? {
            if object.contains_key(&name) {
                return Err(de::Error::custom(format_args!(
                    "duplicate member name {:?} (RFC 8785 and I-JSON forbid repeated names)",
                    truncate(&name)
                )));
            }
            let Strict(value) = map.next_value()?;
            object.insert(name, value);
        }
        Ok(Value::Object(object))
    }
}

/// A member name short enough to quote in an error.
fn truncate(name: &str) -> String {
    name.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(raw: &str) -> String {
        match parse_value(raw.as_bytes()) {
            Err(DomainError::Malformed(reason)) => reason,
            other => panic!("{raw:?} was not refused as malformed: {other:?}"),
        }
    }

    #[test]
    fn reads_what_serde_json_reads() {
        let raw = r#"{"a":[1,-2,3.5,"x",null,true,{"b":{}}],"c":18446744073709551615}"#;
        let strict = parse_value(raw.as_bytes()).unwrap();
        let lenient: Value = serde_json::from_str(raw).unwrap();
        assert_eq!(strict, lenient);
        assert!(parse_object(raw.as_bytes()).is_ok());
        assert!(parse_object(b"[1]").is_err());
    }

    #[test]
    fn refuses_duplicate_member_names_at_any_depth() {
        assert!(
            refused(r#"{"actor":"a","actor":"b"}"#).contains("duplicate member name \"actor\"")
        );
        assert!(refused(r#"{"payload":{"text":"a","text":"b"}}"#).contains("\"text\""));
        assert!(refused(r#"[{"x":[{"y":1,"y":1}]}]"#).contains("\"y\""));
        // The same name in sibling objects is fine.
        parse_value(br#"[{"y":1},{"y":2}]"#).unwrap();
        // Escapes are decoded before names are compared: "\u0061" is "a".
        assert!(refused(r#"{"a":1,"\u0061":2}"#).contains("\"a\""));
    }

    #[test]
    fn bounds_depth_and_refuses_what_is_not_json() {
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert!(refused(&deep).contains("recursion limit"));
        let deep = format!("{}1{}", "{\"a\":".repeat(10_000), "}".repeat(10_000));
        assert!(refused(&deep).contains("recursion limit"));
        refused("{\"a\":1e400}");
        refused("{\"a\":\"\0\"}");
        assert!(parse_value(b"{\"a\":\"\xff\"}").is_err());
        refused("{} {}");
    }
}
