//! `codec`: the embedded store's binary encodings (`worldfleet_embedded::codec`) of item
//! attributes, queue records and keys, as read back from disk.
//!
//! Properties: decoding arbitrary bytes as attributes, as a queue record, as an item key or as
//! a message key never panics (a corrupt record is an error); whatever decodes, encoded again,
//! decodes to the same thing; keys, which have one spelling, re-encode to the very bytes.

use worldfleet_embedded::codec::{
    MessageRecord, decode_attributes, encode_attributes, item_key, message_key, partition_prefix,
    queue_prefix, split_item_key, split_message_key,
};

/// Decodes `data` every way the store does and checks the properties above.
pub fn codec(data: &[u8]) {
    if let Ok(attributes) = decode_attributes(data) {
        let encoded = encode_attributes(&attributes);
        assert_eq!(decode_attributes(&encoded).as_ref(), Ok(&attributes));
    }
    if let Ok(record) = MessageRecord::decode(data) {
        assert_eq!(
            MessageRecord::decode(&record.encode()).as_ref(),
            Ok(&record)
        );
    }
    if let Ok((table, pk, sk)) = split_item_key(data) {
        assert_eq!(item_key(table, pk, sk), data);
        assert!(data.starts_with(&partition_prefix(table, pk)));
    }
    if let Ok((queue, sequence)) = split_message_key(data) {
        assert_eq!(message_key(&queue_prefix(queue), sequence), data);
    }
}
