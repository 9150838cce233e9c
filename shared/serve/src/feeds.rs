//! Feed reads and reader checkpoints over HTTP, on distribute's own functions.
//!
//! - `GET /v1/feeds/{feed}?after=N&limit=M`: entries with sequence numbers above `N` (or above
//!   reader `R`'s checkpoint with `?reader=R` and no `after`; 0 otherwise), at most `M`.
//! - `GET /v1/feeds/{feed}/readers/{reader}`: the reader's checkpoint (0 if it has none).
//! - `PUT /v1/feeds/{feed}/readers/{reader}` with `{"after": N}`: moves it forward to `N`.
//!
//! Feed ids are `player:ID`, `faction:NAME` or `district:UID`; a district UID's `/` must be
//! sent percent-encoded (`district:gm-1%2Fdistrict-2`) so the id stays one path segment. A
//! feed nobody has written to reads as empty: players who have seen nothing yet are normal.
//! Page layout, retention and checkpoint keys are `worldfleet_tables::feed`'s; nothing here
//! knows them.

use std::collections::HashMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::json;
use worldfleet_domain::names::FEEDS_TABLE;
use worldfleet_domain::uid::validate_identifier;
use worldfleet_domain::{FeedEntry, FeedId};
use worldfleet_tables::feed::{checkpoint, commit_checkpoint};
use worldfleet_tables::plan::{COUNTER_NEXT, counter_key};
use worldfleet_tables::read_feed;

use crate::ServeState;
use crate::error::ApiError;

/// A page of a feed, as served.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FeedPageResponse {
    /// The feed id, canonical form.
    pub feed: String,
    /// The `after` the read started from.
    pub after: u64,
    pub entries: Vec<FeedEntry>,
    /// Pass as `after` to continue (equal to `after` when nothing new was found).
    pub next_after: u64,
}

/// Parses a feed id from the path, refusing with a reason that names it.
pub fn parse_feed(raw: &str) -> Result<FeedId, ApiError> {
    FeedId::parse(raw).map_err(|error| {
        ApiError::bad_request(
            "bad_feed",
            format!("{error}, with a district's `/` sent as %2F"),
        )
    })
}

/// Checks a reader name: 1–64 characters of `[A-Za-z0-9._:-]`, like player ids.
pub fn parse_reader(raw: &str) -> Result<&str, ApiError> {
    validate_identifier("reader", raw).map_err(|_| {
        ApiError::bad_request(
            "bad_reader",
            format!("reader {raw:?} is not 1–64 characters of A-Z, a-z, 0-9, '.', '_', ':', '-'"),
        )
    })?;
    Ok(raw)
}

/// Parses a whole number query parameter.
pub fn number_parameter(
    parameters: &HashMap<String, String>,
    name: &str,
) -> Result<Option<u64>, ApiError> {
    parameters
        .get(name)
        .map(|raw| {
            raw.trim().parse::<u64>().map_err(|_| {
                ApiError::bad_request(
                    "bad_parameter",
                    format!("`{name}` is {raw:?}; it must be a whole number"),
                )
            })
        })
        .transpose()
}

/// The query string as a map, or a 400 saying why it is not one.
pub fn query_map(
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<HashMap<String, String>, ApiError> {
    query.map(|Query(map)| map).map_err(|rejection| {
        ApiError::bad_request(
            "bad_parameter",
            format!("the query string does not parse: {rejection}"),
        )
    })
}

/// `GET /v1/feeds/{feed}`.
pub async fn get_feed(
    State(state): State<ServeState>,
    Path(raw_feed): Path<String>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Json<FeedPageResponse>, ApiError> {
    let feed = parse_feed(&raw_feed)?;
    let parameters = query_map(query)?;
    let config = &state.inner.config;
    let limit = number_parameter(&parameters, "limit")?.unwrap_or(config.feed_limit as u64);
    if limit == 0 || limit > config.max_feed_limit as u64 {
        return Err(ApiError::bad_request(
            "bad_parameter",
            format!(
                "`limit` is {limit}; it must be 1 to {}",
                config.max_feed_limit
            ),
        ));
    }
    let table = state.inner.table.as_ref();
    let after = match (
        number_parameter(&parameters, "after")?,
        parameters.get("reader"),
    ) {
        (Some(after), _) => after,
        (None, Some(reader)) => checkpoint(table, FEEDS_TABLE, &feed, parse_reader(reader)?)
            .await
            .map_err(|error| ApiError::from_feed(&error))?,
        (None, None) => 0,
    };
    let read = read_feed(
        table,
        FEEDS_TABLE,
        &feed,
        after,
        limit as usize,
        state.inner.clock.now_ms(),
    )
    .await
    .map_err(|error| ApiError::from_feed(&error))?;
    Ok(Json(FeedPageResponse {
        feed: feed.to_string(),
        after,
        entries: read.entries,
        next_after: read.next_after_seq,
    }))
}

/// `GET /v1/feeds/{feed}/readers/{reader}`.
pub async fn get_reader(
    State(state): State<ServeState>,
    Path((raw_feed, reader)): Path<(String, String)>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let feed = parse_feed(&raw_feed)?;
    let reader = parse_reader(&reader)?;
    let after = checkpoint(state.inner.table.as_ref(), FEEDS_TABLE, &feed, reader)
        .await
        .map_err(|error| ApiError::from_feed(&error))?;
    Ok(Json(
        json!({ "feed": feed.to_string(), "reader": reader, "after": after }),
    ))
}

/// The highest sequence number `feed` has allocated (0 for a feed never written to).
async fn feed_head(state: &ServeState, feed: &FeedId) -> Result<u64, ApiError> {
    let counter = state
        .inner
        .table
        .get(FEEDS_TABLE, &counter_key(&feed.to_string()))
        .await
        .map_err(|error| ApiError::from_port(&error))?;
    Ok(counter
        .and_then(|item| item.i64(COUNTER_NEXT))
        .unwrap_or(0)
        .max(0) as u64)
}

/// `PUT /v1/feeds/{feed}/readers/{reader}` with `{"after": N}`: 200 when moved (or already
/// there), 409 when `N` is behind the checkpoint or past the feed's last sequence number.
pub async fn put_reader(
    State(state): State<ServeState>,
    Path((raw_feed, reader)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let feed = parse_feed(&raw_feed)?;
    let reader = parse_reader(&reader)?;
    let value: serde_json::Value = serde_json::from_slice(&body).map_err(|error| {
        ApiError::bad_request(
            "not_json",
            format!("the body is not JSON ({error}); send {{\"after\": N}}"),
        )
    })?;
    let after = value
        .as_object()
        .filter(|object| object.len() == 1)
        .and_then(|object| object.get("after"))
        .and_then(serde_json::Value::as_u64)
        .ok_or_else(|| {
            ApiError::bad_request(
                "bad_checkpoint",
                "the body must be exactly {\"after\": N} with N a whole number",
            )
        })?;
    let moved = move_checkpoint(&state, &feed, reader, after).await?;
    Ok(checkpoint_response(&feed, reader, after, moved))
}

/// Moves `reader`'s checkpoint of `feed` forward to `after` (the `PUT` above, and a WebSocket
/// `ack`): `Ok(true)` when it moved, `Ok(false)` when it was already there; 409 when `after` is
/// behind the checkpoint or past the feed's last sequence number.
pub async fn move_checkpoint(
    state: &ServeState,
    feed: &FeedId,
    reader: &str,
    after: u64,
) -> Result<bool, ApiError> {
    let table = state.inner.table.as_ref();
    let current = checkpoint(table, FEEDS_TABLE, feed, reader)
        .await
        .map_err(|error| ApiError::from_feed(&error))?;
    let backwards = |current: u64| {
        ApiError::new(
            StatusCode::CONFLICT,
            "checkpoint_backwards",
            format!(
                "reader {reader:?} of {feed} is at {current}; checkpoints only move forward, \
                 so {after} is refused (read with ?after={after} instead)"
            ),
        )
    };
    if after < current {
        return Err(backwards(current));
    }
    if after == current {
        return Ok(false);
    }
    let head = feed_head(state, feed).await?;
    if after > head {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "checkpoint_past_head",
            format!(
                "{feed} has handed out sequence numbers up to {head}; a checkpoint at {after} \
                 would skip entries not written yet"
            ),
        ));
    }
    let moved = commit_checkpoint(
        table,
        FEEDS_TABLE,
        feed,
        reader,
        after,
        state.inner.clock.now_ms(),
    )
    .await
    .map_err(|error| ApiError::from_feed(&error))?;
    if !moved {
        // Another writer moved it first: to `after` (fine) or past it (refused).
        let now = checkpoint(table, FEEDS_TABLE, feed, reader)
            .await
            .map_err(|error| ApiError::from_feed(&error))?;
        if now > after {
            return Err(backwards(now));
        }
    }
    Ok(moved)
}

fn checkpoint_response(feed: &FeedId, reader: &str, after: u64, moved: bool) -> Response {
    (
        StatusCode::OK,
        Json(json!({
            "feed": feed.to_string(),
            "reader": reader,
            "after": after,
            "moved": moved,
        })),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feed_ids_parse_and_bad_ones_are_named() {
        assert_eq!(
            parse_feed("district:gm-1/d-2").unwrap().to_string(),
            "district:gm-1/d-2"
        );
        let error = parse_feed("guild:x").unwrap_err();
        assert_eq!(error.code, "bad_feed");
        assert!(error.message.contains("\"guild:x\""), "{}", error.message);
        assert!(!error.message.contains("envelope"), "{}", error.message);
        assert!(parse_feed("player:bad id").is_err());
        assert!(parse_feed("district:not a uid").is_err());
    }

    #[test]
    fn numbers_and_readers_are_checked() {
        let parameters = HashMap::from([("after".to_owned(), "x".to_owned())]);
        assert_eq!(
            number_parameter(&parameters, "after").unwrap_err().code,
            "bad_parameter"
        );
        assert_eq!(number_parameter(&parameters, "limit").unwrap(), None);
        assert!(parse_reader("mobile-1").is_ok());
        assert_eq!(parse_reader("").unwrap_err().code, "bad_reader");
        assert_eq!(parse_reader("a b").unwrap_err().code, "bad_reader");
    }
}
