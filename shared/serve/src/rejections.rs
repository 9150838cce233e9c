//! `GET /v1/rejections/{event_id}`: what intake refused under one of the caller's event ids.
//!
//! The gateway is the one that signed the request, so a gateway sees only its own refusals.
//! The answer lists every distinct body refused under that id in the last 30 days (a replay
//! and a conflicting rewrite are two rows), each with its reason code, the sentence saying
//! what to do, and how many messages carried those bytes. An empty list means intake has not
//! refused that id: it was accepted, is still queued, or never arrived. The rows are intake's
//! own ([`worldfleet_intake::rejections`]); nothing here knows their layout.

use axum::extract::{Path, State};
use axum::{Extension, Json};
use serde::Serialize;
use worldfleet_domain::envelope::validate_event_id;
use worldfleet_domain::names::REJECTIONS_TABLE;
use worldfleet_intake::rejections::{RETENTION_SECS, RejectionRow, lookup_event};

use crate::error::ApiError;
use crate::{Gateway, ServeState};

/// The answer of a lookup.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RejectionsResponse {
    pub gateway: String,
    pub event_id: String,
    /// How long refusals are kept.
    pub retained_days: u64,
    pub rejections: Vec<RejectionRow>,
}

/// `GET /v1/rejections/{event_id}`.
pub async fn get_rejections(
    State(state): State<ServeState>,
    Extension(Gateway(gateway)): Extension<Gateway>,
    Path(event_id): Path<String>,
) -> Result<Json<RejectionsResponse>, ApiError> {
    validate_event_id(&event_id).map_err(|_| {
        ApiError::bad_request(
            "bad_event_id",
            format!("{event_id:?} is not an event id; event ids are ULIDs or UUID v7s"),
        )
    })?;
    let rejections = lookup_event(
        state.inner.table.as_ref(),
        REJECTIONS_TABLE,
        &gateway,
        &event_id,
    )
    .await
    .map_err(|error| ApiError::from_port(&error))?;
    Ok(Json(RejectionsResponse {
        gateway,
        event_id,
        retained_days: RETENTION_SECS / 86_400,
        rejections,
    }))
}
