//! Runs and resource events across the whole fleet (issue 23): the lists
//! behind `GET /api/v1/reports`, `GET /api/v1/reports/events` and the
//! dashboard's `/runs` and `/changes`, filtered (`filter.rs`), paged by
//! keyset (`query.rs`) and exported as CSV (`csv.rs`).
//!
//! Runs are read from `reports` newest first, by `(finished_at_us, id)`;
//! a resource filter reads `report_events` through its `(resource,
//! finished_at_us)` index and joins the reports it names, so "every run
//! that changed file:/etc/motd" never parses a report body. Events are
//! `report_events` rows (one per resource a report did not leave
//! unchanged, written in the report's transaction by `db::events`).
//! A page's `next_after` is an opaque cursor, the last row's time and id,
//! valid with the same filters.

mod csv;
mod filter;
mod query;

pub use csv::{events_csv, runs_csv};
pub use filter::{DEFAULT_LIMIT, Format, List, MAX_LIMIT, NodeMatch, RunFilter, RunsQuery, time};
pub use query::{EventLine, EventPage, RunPage, events, runs};

/// Where a page ends: the last row's ordering time (µs) and id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub us: i64,
    pub id: i64,
}

impl Cursor {
    /// `US.ID`, as [`Cursor::text`] writes it.
    pub fn parse(text: &str) -> Option<Cursor> {
        let (us, id) = text.split_once('.')?;
        Some(Cursor {
            us: us.parse().ok()?,
            id: id.parse().ok()?,
        })
    }

    pub fn text(self) -> String {
        format!("{}.{}", self.us, self.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_anything_else() {
        let c = Cursor {
            us: 1_764_590_400_000_000,
            id: 42,
        };
        assert_eq!(Cursor::parse(&c.text()), Some(c));
        for bad in ["", "1", "a.b", "1.2.3", "1.x"] {
            assert_eq!(Cursor::parse(bad), None, "{bad}");
        }
    }
}
