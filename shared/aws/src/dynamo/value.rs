//! Conversions between the port's [`Value`]/[`Item`]/[`Key`] and DynamoDB `AttributeValue`s.
//!
//! Numbers are the port's `i64`; a stored number that is not one (a fraction, or beyond 64
//! bits) and DynamoDB set types have no port value, so reading them is a permanent error
//! rather than a silent change.

use std::collections::HashMap;

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use worldfleet_ports::{Error, Item, Key, Result, Value};

/// A DynamoDB item or key.
pub type AttributeMap = HashMap<String, AttributeValue>;

/// The DynamoDB form of a value.
pub fn to_attribute(value: &Value) -> AttributeValue {
    match value {
        Value::S(text) => AttributeValue::S(text.clone()),
        Value::N(number) => AttributeValue::N(number.to_string()),
        Value::B(bytes) => AttributeValue::B(Blob::new(bytes.clone())),
        Value::Bool(flag) => AttributeValue::Bool(*flag),
        Value::Null => AttributeValue::Null(true),
        Value::L(values) => AttributeValue::L(values.iter().map(to_attribute).collect()),
        Value::M(map) => AttributeValue::M(
            map.iter()
                .map(|(name, value)| (name.clone(), to_attribute(value)))
                .collect(),
        ),
    }
}

/// The port form of a DynamoDB value.
pub fn from_attribute(name: &str, attribute: &AttributeValue) -> Result<Value> {
    Ok(match attribute {
        AttributeValue::S(text) => Value::S(text.clone()),
        AttributeValue::N(number) => Value::N(number.parse().map_err(|_| {
            Error::Permanent(format!(
                "attribute {name:?} holds the number {number}, which is not a 64-bit integer"
            ))
        })?),
        AttributeValue::B(blob) => Value::B(blob.as_ref().to_vec()),
        AttributeValue::Bool(flag) => Value::Bool(*flag),
        AttributeValue::Null(_) => Value::Null,
        AttributeValue::L(values) => Value::L(
            values
                .iter()
                .map(|value| from_attribute(name, value))
                .collect::<Result<_>>()?,
        ),
        AttributeValue::M(map) => Value::M(
            map.iter()
                .map(|(key, value)| Ok((key.clone(), from_attribute(key, value)?)))
                .collect::<Result<_>>()?,
        ),
        other => {
            return Err(Error::Permanent(format!(
                "attribute {name:?} has a type the table port does not model: {other:?}"
            )));
        }
    })
}

/// A key as DynamoDB takes it.
pub fn key_to_map(key: &Key) -> AttributeMap {
    HashMap::from([
        ("pk".to_owned(), AttributeValue::S(key.pk.clone())),
        ("sk".to_owned(), AttributeValue::S(key.sk.clone())),
    ])
}

/// A whole item as DynamoDB takes it.
pub fn item_to_map(item: &Item) -> AttributeMap {
    let mut map = key_to_map(&item.key);
    for (name, value) in &item.attributes {
        map.insert(name.clone(), to_attribute(value));
    }
    map
}

/// An item from what DynamoDB returned; `pk` and `sk` must be strings.
pub fn item_from_map(map: &AttributeMap) -> Result<Item> {
    let key_part = |name: &str| match map.get(name) {
        Some(AttributeValue::S(text)) => Ok(text.clone()),
        _ => Err(Error::Permanent(format!(
            "item without a string {name:?} attribute"
        ))),
    };
    let mut item = Item::new(Key::new(key_part("pk")?, key_part("sk")?));
    for (name, attribute) in map {
        if name != "pk" && name != "sk" {
            item.attributes
                .insert(name.clone(), from_attribute(name, attribute)?);
        }
    }
    Ok(item)
}

/// The key of a DynamoDB key or item map.
pub fn key_from_map(map: &AttributeMap) -> Result<Key> {
    match (map.get("pk"), map.get("sk")) {
        (Some(AttributeValue::S(pk)), Some(AttributeValue::S(sk))) => {
            Ok(Key::new(pk.clone(), sk.clone()))
        }
        _ => Err(Error::Permanent("key without string pk and sk".into())),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn every_port_value_round_trips() {
        let nested = Value::M(BTreeMap::from([
            (
                "list".to_owned(),
                Value::L(vec![Value::N(-3), Value::Null, Value::Bool(false)]),
            ),
            ("bytes".to_owned(), Value::B(vec![0, 255])),
        ]));
        let item = Item::new(Key::new("p", "s"))
            .with("text", "héllo")
            .with("n", i64::MIN)
            .with("nested", nested)
            .with("empty", "");
        let map = item_to_map(&item);
        assert_eq!(map["pk"], AttributeValue::S("p".into()));
        assert_eq!(item_from_map(&map).unwrap(), item);
        assert_eq!(key_from_map(&map).unwrap(), Key::new("p", "s"));
    }

    #[test]
    fn values_the_port_cannot_hold_are_errors() {
        let fraction = HashMap::from([
            ("pk".to_owned(), AttributeValue::S("p".into())),
            ("sk".to_owned(), AttributeValue::S("s".into())),
            ("x".to_owned(), AttributeValue::N("1.5".into())),
        ]);
        assert!(item_from_map(&fraction).is_err());
        let keyless = HashMap::from([("pk".to_owned(), AttributeValue::S("p".into()))]);
        assert!(item_from_map(&keyless).is_err());
        assert!(from_attribute("set", &AttributeValue::Ss(vec!["a".into()])).is_err());
    }
}
