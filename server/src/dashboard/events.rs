//! `GET /events`: the live feed, as server-sent events. Each stored report
//! is one `report` event (`{"node", "run_id", "status"}`); the page decides
//! what to refresh. The stream ends when the server shuts down.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use tokio_stream::wrappers::BroadcastStream;

use crate::auth::Caller;
use crate::error::AppError;
use crate::state::AppState;

/// Operators only; the stream carries node names.
pub(super) async fn stream(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Response, AppError> {
    caller.require_operator()?;
    let closed = state.live.closed();
    let events = BroadcastStream::new(state.live.subscribe())
        .filter_map(|item| async move {
            // A lagging receiver skipped some events: say so as one event,
            // which refreshes the page like any other.
            let event = match item {
                Ok(report) => Event::default().event("report").json_data(&report).ok()?,
                Err(_) => Event::default().event("report").data("{}"),
            };
            Some(Ok::<_, Infallible>(event))
        })
        .take_until(closed.cancelled_owned());
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}
