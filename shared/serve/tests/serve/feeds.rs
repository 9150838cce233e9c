//! Feed pages and reader checkpoints over HTTP, read from pages written by distribute's own
//! functions.

use worldfleet_domain::FeedId;
use worldfleet_domain::names::FEEDS_TABLE;
use worldfleet_ports::Item;
use worldfleet_tables::feed::trim_key;

use crate::common::{entry, fixture};

#[tokio::test]
async fn a_feed_reads_in_pages_from_after() {
    let fixture = fixture().await;
    fixture.write_page("player:p-000042", 1, 3).await;
    fixture.write_page("player:p-000042", 4, 6).await;
    let (status, answer) = fixture
        .call_json(fixture.signed("GET", "/v1/feeds/player:p-000042?after=2&limit=3", b""))
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["feed"], "player:p-000042");
    let seqs: Vec<u64> = answer["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [3, 4, 5]);
    assert_eq!(answer["next_after"], 5);
    assert_eq!(answer["entries"][0]["text"], entry(3).text);
    assert_eq!(answer["entries"][0]["event_id"], entry(3).event_id);
    let (_, rest) = fixture
        .call_json(fixture.signed("GET", "/v1/feeds/player:p-000042?after=5", b""))
        .await;
    assert_eq!(rest["entries"].as_array().unwrap().len(), 1);
    assert_eq!(rest["next_after"], 6);
    let (_, empty) = fixture
        .call_json(fixture.signed("GET", "/v1/feeds/player:nobody", b""))
        .await;
    assert_eq!(empty["entries"].as_array().unwrap().len(), 0);
    assert_eq!(empty["next_after"], 0);
}

#[tokio::test]
async fn a_district_feed_is_addressed_with_its_slash_encoded() {
    let fixture = fixture().await;
    fixture
        .write_page("district:gm-0001/district-003", 1, 2)
        .await;
    let (status, answer) = fixture
        .call_json(fixture.signed("GET", "/v1/feeds/district:gm-0001%2Fdistrict-003", b""))
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["feed"], "district:gm-0001/district-003");
    assert_eq!(answer["entries"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn bad_feed_ids_and_parameters_are_400_naming_what_is_wrong() {
    let fixture = fixture().await;
    for (uri, code, names) in [
        ("/v1/feeds/guild:x", "bad_feed", "guild:x"),
        ("/v1/feeds/player:bad%20id", "bad_feed", "player:bad id"),
        ("/v1/feeds/nocolon", "bad_feed", "nocolon"),
        ("/v1/feeds/player:p-1?after=minus", "bad_parameter", "after"),
        ("/v1/feeds/player:p-1?limit=0", "bad_parameter", "limit"),
        (
            "/v1/feeds/player:p-1?limit=100000",
            "bad_parameter",
            "limit",
        ),
        (
            "/v1/feeds/player:p-1/readers/bad%20reader",
            "bad_reader",
            "bad reader",
        ),
    ] {
        let (status, answer) = fixture.call_json(fixture.signed("GET", uri, b"")).await;
        assert_eq!(status, 400, "{uri}: {answer}");
        assert_eq!(answer["error"], code, "{uri}: {answer}");
        let message = answer["message"].as_str().unwrap();
        assert!(message.contains(names), "{uri}: {message}");
        assert!(!message.contains("envelope"), "{uri}: {message}");
    }
}

#[tokio::test]
async fn a_read_behind_retention_is_410_with_distributes_explanation() {
    let fixture = fixture().await;
    fixture.write_page("player:p-1", 11, 12).await;
    let feed = FeedId::parse("player:p-1").unwrap();
    fixture
        .table
        .put(
            FEEDS_TABLE,
            Item::new(trim_key(&feed)).with("trimmed_through", 10_i64),
            None,
        )
        .await
        .unwrap();
    let (status, answer) = fixture
        .call_json(fixture.signed("GET", "/v1/feeds/player:p-1?after=3", b""))
        .await;
    assert_eq!(status, 410, "{answer}");
    assert_eq!(answer["error"], "behind_retention");
    let message = answer["message"].as_str().unwrap();
    assert!(message.contains("entries 4 to 10 are gone"), "{message}");
    assert!(
        message.contains("rebuilding the reader's view from canon"),
        "{message}"
    );
    let (status, _) = fixture
        .call_json(fixture.signed("GET", "/v1/feeds/player:p-1?after=10", b""))
        .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn checkpoints_move_forward_only() {
    let fixture = fixture().await;
    fixture.write_page("player:p-1", 1, 5).await;
    let path = "/v1/feeds/player:p-1/readers/mobile";
    let (status, answer) = fixture.call_json(fixture.signed("GET", path, b"")).await;
    assert_eq!((status, answer["after"].as_u64()), (200, Some(0)));

    let (status, answer) = fixture
        .call_json(fixture.signed("PUT", path, br#"{"after": 3}"#))
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["moved"], true);
    let (_, answer) = fixture.call_json(fixture.signed("GET", path, b"")).await;
    assert_eq!(answer["after"], 3);

    // The same value again is fine and moves nothing.
    let (status, answer) = fixture
        .call_json(fixture.signed("PUT", path, br#"{"after": 3}"#))
        .await;
    assert_eq!((status, answer["moved"].as_bool()), (200, Some(false)));

    // Backwards is a conflict that says where the checkpoint is.
    let (status, answer) = fixture
        .call_json(fixture.signed("PUT", path, br#"{"after": 2}"#))
        .await;
    assert_eq!(status, 409, "{answer}");
    assert_eq!(answer["error"], "checkpoint_backwards");
    assert!(
        answer["message"].as_str().unwrap().contains("is at 3"),
        "{answer}"
    );

    // Past the last handed-out sequence number is a conflict too.
    let (status, answer) = fixture
        .call_json(fixture.signed("PUT", path, br#"{"after": 9}"#))
        .await;
    assert_eq!(status, 409, "{answer}");
    assert_eq!(answer["error"], "checkpoint_past_head");

    // A read with ?reader= starts from the checkpoint.
    let (_, answer) = fixture
        .call_json(fixture.signed("GET", "/v1/feeds/player:p-1?reader=mobile", b""))
        .await;
    assert_eq!(answer["after"], 3);
    assert_eq!(answer["entries"][0]["seq"], 4);
    let (_, answer) = fixture.call_json(fixture.signed("GET", path, b"")).await;
    assert_eq!(answer["after"], 3, "the refused moves changed nothing");
}

#[tokio::test]
async fn a_checkpoint_body_must_be_after_and_a_number() {
    let fixture = fixture().await;
    let path = "/v1/feeds/player:p-1/readers/mobile";
    for (body, code) in [
        (&b"not json"[..], "not_json"),
        (b"{}", "bad_checkpoint"),
        (br#"{"after": -1}"#, "bad_checkpoint"),
        (br#"{"after": "3"}"#, "bad_checkpoint"),
        (br#"{"after": 1, "extra": 2}"#, "bad_checkpoint"),
        (b"[1]", "bad_checkpoint"),
    ] {
        let (status, answer) = fixture.call_json(fixture.signed("PUT", path, body)).await;
        assert_eq!(status, 400, "{body:?}: {answer}");
        assert_eq!(answer["error"], code, "{body:?}: {answer}");
    }
}
