//! Compact binary encodings of keys, item attributes and queue records.
//!
//! Keys are built so that a prefix scan selects exactly one table partition or one queue:
//! every variable-length component except the last is length-prefixed, so `pk = "a"` can never
//! share a prefix with `pk = "ab"`, and within a partition items sort by the raw sort-key bytes
//! (the order of Rust string comparison, which is DynamoDB's for UTF-8 sort keys).
//!
//! Values use a tag byte per attribute value and LEB128 lengths: smaller and several times
//! faster to encode and decode than JSON for the small items the stages write.

use std::collections::BTreeMap;

use worldfleet_ports::{Attributes, Error, Result, Value};

/// Longest nesting of lists and maps accepted when decoding (DynamoDB allows 32).
const MAX_DEPTH: usize = 64;

fn corrupt(what: &str) -> Error {
    Error::Permanent(format!("corrupt stored record: {what}"))
}

/// Appends `value` as an unsigned LEB128 varint.
pub(crate) fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// A cursor over an encoded record.
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Self { bytes }
    }

    pub(crate) fn varint(&mut self) -> Result<u64> {
        let mut value = 0_u64;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = self.bytes.split_first().ok_or_else(|| corrupt("varint"))?;
            self.bytes = rest;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(corrupt("varint too long"))
    }

    pub(crate) fn u8(&mut self) -> Result<u8> {
        let (&byte, rest) = self.bytes.split_first().ok_or_else(|| corrupt("byte"))?;
        self.bytes = rest;
        Ok(byte)
    }

    pub(crate) fn bytes(&mut self) -> Result<&'a [u8]> {
        let len = usize::try_from(self.varint()?).map_err(|_| corrupt("length"))?;
        if len > self.bytes.len() {
            return Err(corrupt("length past end"));
        }
        let (head, rest) = self.bytes.split_at(len);
        self.bytes = rest;
        Ok(head)
    }

    pub(crate) fn string(&mut self) -> Result<String> {
        let bytes = self.bytes()?;
        String::from_utf8(bytes.to_vec()).map_err(|_| corrupt("utf-8"))
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

const TAG_S: u8 = 0;
const TAG_N: u8 = 1;
const TAG_B: u8 = 2;
const TAG_FALSE: u8 = 3;
const TAG_TRUE: u8 = 4;
const TAG_NULL: u8 = 5;
const TAG_L: u8 = 6;
const TAG_M: u8 = 7;

fn zigzag(number: i64) -> u64 {
    ((number << 1) ^ (number >> 63)) as u64
}

fn unzigzag(number: u64) -> i64 {
    ((number >> 1) as i64) ^ -((number & 1) as i64)
}

fn put_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::S(text) => {
            out.push(TAG_S);
            put_bytes(out, text.as_bytes());
        }
        Value::N(number) => {
            out.push(TAG_N);
            put_varint(out, zigzag(*number));
        }
        Value::B(bytes) => {
            out.push(TAG_B);
            put_bytes(out, bytes);
        }
        Value::Bool(false) => out.push(TAG_FALSE),
        Value::Bool(true) => out.push(TAG_TRUE),
        Value::Null => out.push(TAG_NULL),
        Value::L(values) => {
            out.push(TAG_L);
            put_varint(out, values.len() as u64);
            for value in values {
                put_value(out, value);
            }
        }
        Value::M(map) => {
            out.push(TAG_M);
            put_map(out, map);
        }
    }
}

fn put_map(out: &mut Vec<u8>, map: &BTreeMap<String, Value>) {
    put_varint(out, map.len() as u64);
    for (name, value) in map {
        put_bytes(out, name.as_bytes());
        put_value(out, value);
    }
}

fn read_value(reader: &mut Reader<'_>, depth: usize) -> Result<Value> {
    if depth > MAX_DEPTH {
        return Err(corrupt("nesting too deep"));
    }
    Ok(match reader.u8()? {
        TAG_S => Value::S(reader.string()?),
        TAG_N => Value::N(unzigzag(reader.varint()?)),
        TAG_B => Value::B(reader.bytes()?.to_vec()),
        TAG_FALSE => Value::Bool(false),
        TAG_TRUE => Value::Bool(true),
        TAG_NULL => Value::Null,
        TAG_L => {
            let count = reader.varint()?;
            let mut values = Vec::with_capacity(count.min(1024) as usize);
            for _ in 0..count {
                values.push(read_value(reader, depth + 1)?);
            }
            Value::L(values)
        }
        TAG_M => Value::M(read_map(reader, depth + 1)?),
        _ => return Err(corrupt("unknown value tag")),
    })
}

fn read_map(reader: &mut Reader<'_>, depth: usize) -> Result<BTreeMap<String, Value>> {
    let count = reader.varint()?;
    let mut map = BTreeMap::new();
    for _ in 0..count {
        let name = reader.string()?;
        let value = read_value(reader, depth)?;
        map.insert(name, value);
    }
    Ok(map)
}

/// Encodes an item's non-key attributes.
pub fn encode_attributes(attributes: &Attributes) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    put_map(&mut out, attributes);
    out
}

/// Decodes what [`encode_attributes`] wrote.
pub fn decode_attributes(bytes: &[u8]) -> Result<Attributes> {
    let mut reader = Reader::new(bytes);
    let attributes = read_map(&mut reader, 0)?;
    if !reader.is_empty() {
        return Err(corrupt("trailing bytes"));
    }
    Ok(attributes)
}

/// Key of an item: `len(table) table len(pk) pk sk` (lengths as u16 big-endian).
pub fn item_key(table: &str, pk: &str, sk: &str) -> Vec<u8> {
    let mut key = partition_prefix(table, pk);
    key.extend_from_slice(sk.as_bytes());
    key
}

/// The prefix every item of one partition shares.
///
/// The lengths fit their fields by the adapters' validation before any key is built: table
/// names are 3–255 bytes (`ensure_table`, and `check_table` refuses undeclared ones) and
/// partition keys at most 2,048 bytes (`validate_key`), both under `u16::MAX`.
pub fn partition_prefix(table: &str, pk: &str) -> Vec<u8> {
    debug_assert!(table.len() <= usize::from(u16::MAX) && pk.len() <= usize::from(u16::MAX));
    let mut key = Vec::with_capacity(4 + table.len() + pk.len() + 24);
    key.extend_from_slice(&(table.len() as u16).to_be_bytes());
    key.extend_from_slice(table.as_bytes());
    key.extend_from_slice(&(pk.len() as u16).to_be_bytes());
    key.extend_from_slice(pk.as_bytes());
    key
}

/// Splits an item key into table, pk and sk.
pub fn split_item_key(key: &[u8]) -> Result<(&str, &str, &str)> {
    fn part(key: &[u8]) -> Result<(&str, &[u8])> {
        let (len, rest) = key.split_at_checked(2).ok_or_else(|| corrupt("item key"))?;
        let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
        let (text, rest) = rest
            .split_at_checked(len)
            .ok_or_else(|| corrupt("item key"))?;
        let text = std::str::from_utf8(text).map_err(|_| corrupt("item key utf-8"))?;
        Ok((text, rest))
    }
    let (table, rest) = part(key)?;
    let (pk, sk) = part(rest)?;
    let sk = std::str::from_utf8(sk).map_err(|_| corrupt("item key utf-8"))?;
    Ok((table, pk, sk))
}

/// The prefix of every key of one queue (`len(queue) queue`). Queue names are at most 80 bytes
/// (validated when a queue is declared; no other name reaches the store), so the length fits
/// its byte.
pub fn queue_prefix(queue: &str) -> Vec<u8> {
    debug_assert!(queue.len() <= usize::from(u8::MAX));
    let mut key = Vec::with_capacity(1 + queue.len() + 8);
    key.push(queue.len() as u8);
    key.extend_from_slice(queue.as_bytes());
    key
}

/// Key of a queue message: queue prefix then the sequence number, big-endian.
pub fn message_key(prefix: &[u8], sequence: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(prefix.len() + 8);
    key.extend_from_slice(prefix);
    key.extend_from_slice(&sequence.to_be_bytes());
    key
}

/// Splits a message key into queue name and sequence number.
pub fn split_message_key(key: &[u8]) -> Result<(&str, u64)> {
    let (&len, rest) = key.split_first().ok_or_else(|| corrupt("message key"))?;
    let (name, sequence) = rest
        .split_at_checked(usize::from(len))
        .ok_or_else(|| corrupt("message key"))?;
    let name = std::str::from_utf8(name).map_err(|_| corrupt("message key utf-8"))?;
    let sequence: [u8; 8] = sequence
        .try_into()
        .map_err(|_| corrupt("message key sequence"))?;
    Ok((name, u64::from_be_bytes(sequence)))
}

/// A stored queue message.
#[derive(Debug, Clone, PartialEq)]
pub struct MessageRecord {
    pub message_id: String,
    pub sent_at_ms: u64,
    /// When the message first becomes visible (its delay), Unix ms.
    pub visible_at_ms: u64,
    pub group_id: Option<String>,
    pub body: String,
}

impl MessageRecord {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(32 + self.message_id.len() + self.body.len());
        put_bytes(&mut out, self.message_id.as_bytes());
        put_varint(&mut out, self.sent_at_ms);
        put_varint(&mut out, self.visible_at_ms);
        match &self.group_id {
            Some(group) => {
                out.push(1);
                put_bytes(&mut out, group.as_bytes());
            }
            None => out.push(0),
        }
        put_bytes(&mut out, self.body.as_bytes());
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let mut reader = Reader::new(bytes);
        let message_id = reader.string()?;
        let sent_at_ms = reader.varint()?;
        let visible_at_ms = reader.varint()?;
        let group_id = match reader.u8()? {
            0 => None,
            _ => Some(reader.string()?),
        };
        let body = reader.string()?;
        if !reader.is_empty() {
            return Err(corrupt("trailing bytes after a queue message"));
        }
        Ok(Self {
            message_id,
            sent_at_ms,
            visible_at_ms,
            group_id,
            body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_round_trip() {
        let mut nested = BTreeMap::new();
        nested.insert("x".to_owned(), Value::L(vec![Value::Null, Value::N(-1)]));
        let mut attributes = Attributes::new();
        attributes.insert("s".into(), Value::S("héllo".into()));
        attributes.insert("n".into(), Value::N(i64::MIN));
        attributes.insert("m".into(), Value::N(i64::MAX));
        attributes.insert("b".into(), Value::B(vec![0, 255]));
        attributes.insert("t".into(), Value::Bool(true));
        attributes.insert("f".into(), Value::Bool(false));
        attributes.insert("map".into(), Value::M(nested));
        let encoded = encode_attributes(&attributes);
        assert_eq!(decode_attributes(&encoded).unwrap(), attributes);
        assert!(decode_attributes(&encoded[..encoded.len() - 1]).is_err());
        assert!(decode_attributes(&[9, 9, 9]).is_err());
    }

    #[test]
    fn a_message_record_round_trips_and_refuses_truncation_and_trailing_bytes() {
        let record = MessageRecord {
            message_id: "m-1".into(),
            sent_at_ms: 1_763_700_000_000,
            visible_at_ms: 1_763_700_005_000,
            group_id: Some("realm/zone".into()),
            body: "{\"a\":1}".into(),
        };
        let encoded = record.encode();
        assert_eq!(MessageRecord::decode(&encoded).unwrap(), record);
        assert!(MessageRecord::decode(&encoded[..encoded.len() - 1]).is_err());
        let mut longer = encoded.clone();
        longer.push(0);
        assert!(MessageRecord::decode(&longer).is_err());
    }

    #[test]
    fn partitions_do_not_share_prefixes() {
        let short = item_key("t", "ab", "c");
        let long_prefix = partition_prefix("t", "abc");
        assert!(!short.starts_with(&long_prefix));
        assert!(!item_key("t", "abc", "x").starts_with(&partition_prefix("t", "ab")));
        assert!(item_key("t", "p", "a") < item_key("t", "p", "a#"));
        assert_eq!(
            split_item_key(&item_key("tab", "pk", "sk")).unwrap(),
            ("tab", "pk", "sk")
        );
    }

    #[test]
    fn message_records_round_trip() {
        let record = MessageRecord {
            message_id: "id".into(),
            sent_at_ms: 5,
            visible_at_ms: 7,
            group_id: Some("g".into()),
            body: "body".into(),
        };
        assert_eq!(MessageRecord::decode(&record.encode()).unwrap(), record);
        let key = message_key(&queue_prefix("q.fifo"), 42);
        assert_eq!(split_message_key(&key).unwrap(), ("q.fifo", 42));
    }
}
