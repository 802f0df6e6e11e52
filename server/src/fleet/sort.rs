//! The order of the node list: triage first (what needs an operator before
//! what does not), or any column either way, each paged by keyset on
//! `(key, name)` so a page never repeats or skips a node while the fleet
//! reports.

use serde_json::Value;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::db::Sql;

/// What the list is ordered by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    /// Failed, compile error, repaired drift, noop pending, unresponsive,
    /// stale, changed, never reported, unchanged; then by name.
    Triage,
    Name,
    /// In the order of `NodeState::ALL`.
    State,
    Environment,
    Roles,
    LastRun,
    Duration,
    Commit,
}

impl SortKey {
    pub const ALL: [SortKey; 8] = [
        SortKey::Triage,
        SortKey::Name,
        SortKey::State,
        SortKey::Environment,
        SortKey::Roles,
        SortKey::LastRun,
        SortKey::Duration,
        SortKey::Commit,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SortKey::Triage => "triage",
            SortKey::Name => "name",
            SortKey::State => "state",
            SortKey::Environment => "environment",
            SortKey::Roles => "roles",
            SortKey::LastRun => "last_run",
            SortKey::Duration => "duration",
            SortKey::Commit => "commit",
        }
    }

    /// The key as an SQL expression over the columns of
    /// `Context::push_columns` (`state`, `stale`) and the node's row; never
    /// NULL, so keyset comparisons hold. Integer keys are cast to BIGINT so
    /// both backends return the same type.
    fn expression(self) -> &'static str {
        match self {
            SortKey::Triage => {
                "CAST(CASE WHEN state = 'failed' THEN 0
                   WHEN compile_error IS NOT NULL THEN 1
                   WHEN state = 'changed' AND COALESCE(last_corrective, 0) > 0 THEN 2
                   WHEN state = 'noop_pending' THEN 3
                   WHEN state = 'unresponsive' THEN 4
                   WHEN stale = 1 THEN 5
                   WHEN state = 'changed' THEN 6
                   WHEN state = 'never_reported' THEN 7
                   ELSE 8 END AS BIGINT)"
            }
            SortKey::Name => "name",
            SortKey::State => {
                "CAST(CASE state WHEN 'failed' THEN 0 WHEN 'unresponsive' THEN 1
                   WHEN 'noop_pending' THEN 2 WHEN 'changed' THEN 3 WHEN 'unchanged' THEN 4
                   ELSE 5 END AS BIGINT)"
            }
            SortKey::Environment => "COALESCE(environment, '')",
            SortKey::Roles => "COALESCE(roles, '')",
            SortKey::LastRun => "CAST(COALESCE(last_run_at_us, -1) AS BIGINT)",
            SortKey::Duration => "CAST(COALESCE(last_duration_ms, -1) * 1000 AS BIGINT)",
            SortKey::Commit => "COALESCE(last_commit, '')",
        }
    }

    fn is_integer(self) -> bool {
        matches!(
            self,
            SortKey::Triage | SortKey::State | SortKey::LastRun | SortKey::Duration
        )
    }
}

/// A key and a direction: `last_run` ascending, `-last_run` descending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sort {
    pub key: SortKey,
    pub descending: bool,
}

impl Default for Sort {
    fn default() -> Sort {
        Sort {
            key: SortKey::Triage,
            descending: false,
        }
    }
}

impl Sort {
    /// `KEY` or `-KEY`; anything else is an error naming the keys.
    pub fn parse(text: &str) -> Result<Sort, String> {
        let (descending, name) = match text.trim().strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text.trim()),
        };
        match SortKey::ALL.into_iter().find(|k| k.as_str() == name) {
            Some(key) => Ok(Sort { key, descending }),
            None => {
                let keys: Vec<&str> = SortKey::ALL.iter().map(|k| k.as_str()).collect();
                Err(format!(
                    "unknown sort `{}`: `sort` is one of {}, `-` first for descending",
                    text.trim(),
                    keys.join(", ")
                ))
            }
        }
    }

    /// As `parse` reads it.
    pub fn as_param(self) -> String {
        let sign = if self.descending { "-" } else { "" };
        format!("{sign}{}", self.key.as_str())
    }

    /// The same key the other way; ascending for a key not sorted by yet.
    pub fn toggled(self, key: SortKey) -> Sort {
        Sort {
            key,
            descending: self.key == key && !self.descending,
        }
    }

    /// `, <key> AS sort_key`: the column the page is ordered and continued by.
    pub(super) fn push_column(self, q: &mut Sql) {
        q.push(", ")
            .push(self.key.expression())
            .push(" AS sort_key");
    }

    /// `AND` the rows after `cursor` in this order.
    pub(super) fn push_after(self, q: &mut Sql, cursor: &Cursor) {
        let op = if self.descending { " < " } else { " > " };
        q.push(" AND (sort_key").push(op);
        cursor.push_key(q);
        q.push(" OR (sort_key = ");
        cursor.push_key(q);
        q.push(" AND name > ").bind(cursor.name.clone()).push("))");
    }

    pub(super) fn push_order(self, q: &mut Sql) {
        let dir = if self.descending { "DESC" } else { "ASC" };
        q.push(" ORDER BY sort_key ").push(dir).push(", name ASC");
    }

    /// Where a page that ends with `row` continues.
    pub(super) fn cursor_of(self, row: &AnyRow) -> Result<Cursor, sqlx::Error> {
        let key = if self.key.is_integer() {
            Key::Integer(row.try_get("sort_key")?)
        } else {
            Key::Text(row.try_get("sort_key")?)
        };
        Ok(Cursor {
            key,
            name: row.try_get("name")?,
        })
    }

    /// The cursor in an `after` parameter; `Err` says why it does not fit
    /// this order.
    pub fn parse_cursor(self, text: &str) -> Result<Cursor, String> {
        let unfit = || {
            format!(
                "the page cursor `{text}` does not fit the order `{}`",
                self.as_param()
            )
        };
        // Name order continues after a plain name, as the node API does.
        if self.key == SortKey::Name {
            return Ok(Cursor {
                key: Key::Text(text.to_owned()),
                name: text.to_owned(),
            });
        }
        let (key, name): (Value, String) = serde_json::from_str(text).map_err(|_| unfit())?;
        let key = match key {
            Value::Number(n) if self.key.is_integer() => {
                Key::Integer(n.as_i64().ok_or_else(unfit)?)
            }
            Value::String(s) if !self.key.is_integer() => Key::Text(s),
            _ => return Err(unfit()),
        };
        Ok(Cursor { key, name })
    }
}

/// Where a page continues: the last row's key and name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    key: Key,
    name: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Key {
    Integer(i64),
    Text(String),
}

impl Cursor {
    fn push_key(&self, q: &mut Sql) {
        match &self.key {
            Key::Integer(n) => q.bind(*n),
            Key::Text(s) => q.bind(s.clone()),
        };
    }

    /// The `after` parameter that continues after this row: the name alone
    /// in name order, else `[key, name]` as JSON.
    pub fn to_param(&self, sort: Sort) -> String {
        if sort.key == SortKey::Name {
            return self.name.clone();
        }
        let key = match &self.key {
            Key::Integer(n) => Value::from(*n),
            Key::Text(s) => Value::from(s.as_str()),
        };
        Value::from(vec![key, Value::from(self.name.as_str())]).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorts_read_back_as_written() {
        for key in SortKey::ALL {
            for descending in [false, true] {
                let sort = Sort { key, descending };
                assert_eq!(Sort::parse(&sort.as_param()), Ok(sort));
            }
        }
        assert!(
            Sort::parse("bogus")
                .unwrap_err()
                .contains("unknown sort `bogus`")
        );
        assert!(Sort::parse("--name").is_err());
    }

    #[test]
    fn toggling_a_column_flips_it_and_a_new_column_starts_ascending() {
        let by_run = Sort::parse("last_run").unwrap();
        assert_eq!(by_run.toggled(SortKey::LastRun).as_param(), "-last_run");
        assert_eq!(
            by_run.toggled(SortKey::LastRun).toggled(SortKey::LastRun),
            by_run
        );
        assert_eq!(by_run.toggled(SortKey::Name).as_param(), "name");
    }

    #[test]
    fn cursors_round_trip_and_refuse_another_order() {
        let triage = Sort::default();
        let cursor = Cursor {
            key: Key::Integer(3),
            name: "web-\"7\"".into(),
        };
        assert_eq!(triage.parse_cursor(&cursor.to_param(triage)), Ok(cursor));
        let by_env = Sort::parse("-environment").unwrap();
        let cursor = Cursor {
            key: Key::Text("prod".into()),
            name: "db-1".into(),
        };
        assert_eq!(
            by_env.parse_cursor(&cursor.to_param(by_env)),
            Ok(cursor.clone())
        );
        assert!(triage.parse_cursor(&cursor.to_param(by_env)).is_err());
        assert!(triage.parse_cursor("web-1").is_err());
        let by_name = Sort::parse("name").unwrap();
        assert_eq!(
            by_name.parse_cursor("web-1").unwrap().to_param(by_name),
            "web-1"
        );
    }
}
