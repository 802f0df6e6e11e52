//! The fleet-wide runs and changes filters as typed (the API's query
//! string, the dashboard's form), parsed once; a part that cannot be used
//! is an error naming its parameter.

use serde::Deserialize;

use super::Cursor;

/// The query string of `GET /api/v1/reports`, `/api/v1/reports/events`,
/// `/runs` and `/changes`: every part optional, empty meaning unset.
#[derive(Debug, Default, Clone, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RunsQuery {
    /// Runs: `changed` (not in noop), `noop` (a dry run that would
    /// change), `unchanged`, `failed`. Events: the resource's status,
    /// `changed`, `noop`, `failed` or `skipped`.
    #[serde(default)]
    #[param(example = "failed")]
    pub status: String,
    /// The node: its exact name, or a prefix ending in `*` (`web-*`).
    #[serde(default)]
    #[param(example = "web-*")]
    pub node: String,
    /// The environment the run was in.
    #[serde(default)]
    #[param(example = "production")]
    pub environment: String,
    /// A resource id, `KIND:NAME`: only runs (events) where it changed,
    /// failed, was skipped or would change in noop.
    #[serde(default)]
    #[param(example = "file:/etc/motd")]
    pub resource: String,
    /// `true`: only corrective changes (a resource repaired drift from a
    /// desired state that had not changed: the agent's per-resource
    /// `corrective` flag); for runs, those with at least one.
    #[serde(default)]
    #[param(example = "true", pattern = "^(true|false|1|0|on|off)?$")]
    pub corrective: String,
    /// Finished at or after: RFC 3339, or an age back from now (`30m`,
    /// `24h`, `7d`).
    #[serde(default)]
    #[param(example = "24h")]
    pub since: String,
    /// Finished strictly before: RFC 3339, or an age back from now.
    #[serde(default)]
    #[param(example = "2026-12-01T00:00:00Z")]
    pub until: String,
    /// The `next_after` of the previous page, with the same filters.
    #[serde(default)]
    #[param(example = "1764590400000000.42")]
    pub after: String,
    /// How many: a page holds 100 unless told, at most 1000; a download
    /// (`format` given) every match unless told, at most 100000.
    #[serde(default)]
    #[param(example = "100", pattern = "^[0-9]*$")]
    pub limit: String,
    /// `json` (the default; as a download when given) or `csv`. A download
    /// holds every match from `after` on (at most `limit`, at most 100000);
    /// its `next_after` (JSON) or `Drover-Next-After` header (CSV) says
    /// where the rest begins when that cap cut it.
    #[serde(default)]
    #[param(example = "json", pattern = "^(json|csv)?$")]
    pub format: String,
}

/// Which list a filter is for: the statuses differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum List {
    Runs,
    Events,
}

/// The node part of a filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeMatch {
    Exact(String),
    Prefix(String),
}

/// A filter ready to query.
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    pub status: Option<String>,
    pub node: Option<NodeMatch>,
    pub environment: Option<String>,
    pub resource: Option<String>,
    pub corrective: bool,
    /// Microseconds since the epoch, inclusive.
    pub since_us: Option<i64>,
    /// Microseconds since the epoch, exclusive.
    pub until_us: Option<i64>,
    pub after: Option<Cursor>,
    pub limit: u32,
}

/// Rows per page unless `limit` says otherwise, and the most it may say.
pub const DEFAULT_LIMIT: u32 = 100;
pub const MAX_LIMIT: u32 = 1000;
/// Rows a download holds unless `limit` says fewer.
const MAX_DOWNLOAD: u32 = crate::export::MAX_ROWS as u32;

/// How an answer is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// JSON, shown (no `format` given).
    Json,
    /// JSON as a download (`format=json`).
    JsonFile,
    Csv,
}

impl RunsQuery {
    /// The filter for `list` at `now`, or the first part that cannot be
    /// used, naming its parameter.
    pub fn parse(&self, list: List, now: jiff::Timestamp) -> Result<RunFilter, String> {
        let (default_limit, max_limit) = match self.format()? {
            Format::Json => (DEFAULT_LIMIT, MAX_LIMIT),
            Format::JsonFile | Format::Csv => (MAX_DOWNLOAD, MAX_DOWNLOAD),
        };
        Ok(RunFilter {
            status: set(&self.status).map(|s| status(list, s)).transpose()?,
            node: set(&self.node).map(node),
            environment: set(&self.environment).map(str::to_owned),
            resource: set(&self.resource).map(resource).transpose()?,
            corrective: flag("corrective", &self.corrective)?,
            since_us: set(&self.since)
                .map(|t| time("since", t, now))
                .transpose()?,
            until_us: set(&self.until)
                .map(|t| time("until", t, now))
                .transpose()?,
            after: set(&self.after)
                .map(|a| Cursor::parse(a).ok_or_else(|| format!("invalid `after` cursor `{a}`")))
                .transpose()?,
            limit: limit(&self.limit, default_limit, max_limit)?,
        })
    }

    /// How to answer: `format`, checked.
    pub fn format(&self) -> Result<Format, String> {
        match self.format.trim() {
            "" => Ok(Format::Json),
            "json" => Ok(Format::JsonFile),
            "csv" => Ok(Format::Csv),
            other => Err(format!("invalid `format` `{other}`: json or csv")),
        }
    }

    /// `k=v&...` of the parts that are set (not `after`, `limit` or
    /// `format`), then `extra`, percent-encoded.
    pub fn query(&self, extra: &[(&str, &str)]) -> String {
        [
            ("status", self.status.as_str()),
            ("node", &self.node),
            ("environment", &self.environment),
            ("resource", &self.resource),
            ("corrective", &self.corrective),
            ("since", &self.since),
            ("until", &self.until),
        ]
        .iter()
        .chain(extra)
        .filter(|(_, v)| !v.trim().is_empty())
        .map(|(k, v)| format!("{k}={}", crate::fleet::urlencode(v.trim())))
        .collect::<Vec<_>>()
        .join("&")
    }
}

fn set(s: &str) -> Option<&str> {
    Some(s.trim()).filter(|s| !s.is_empty())
}

fn status(list: List, s: &str) -> Result<String, String> {
    let known: &[&str] = match list {
        List::Runs => &["changed", "noop", "unchanged", "failed"],
        List::Events => &["changed", "noop", "failed", "skipped"],
    };
    if known.contains(&s) {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "invalid `status` `{s}`: one of {}",
            known.join(", ")
        ))
    }
}

fn node(s: &str) -> NodeMatch {
    match s.strip_suffix('*') {
        Some(prefix) => NodeMatch::Prefix(prefix.to_owned()),
        None => NodeMatch::Exact(s.to_owned()),
    }
}

/// `KIND:NAME`, as reports spell resource ids.
fn resource(s: &str) -> Result<String, String> {
    match s.split_once(':') {
        Some((kind, name)) if !kind.is_empty() && !name.is_empty() => Ok(s.to_owned()),
        _ => Err(format!(
            "invalid `resource` `{s}`: KIND:NAME, e.g. file:/etc/motd or package:nginx"
        )),
    }
}

fn flag(name: &str, s: &str) -> Result<bool, String> {
    match s.trim() {
        "" | "false" | "0" | "off" => Ok(false),
        "true" | "1" | "on" => Ok(true),
        other => Err(format!("invalid `{name}` `{other}`: true or false")),
    }
}

fn limit(s: &str, default: u32, max: u32) -> Result<u32, String> {
    let Some(s) = set(s) else {
        return Ok(default);
    };
    match s.parse::<u32>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(format!("invalid `limit` `{s}`: 1 to {max}")),
    }
}

/// RFC 3339, or an age back from `now`: a number and `m`, `h` or `d`.
pub fn time(name: &str, s: &str, now: jiff::Timestamp) -> Result<i64, String> {
    if let Ok(t) = s.parse::<jiff::Timestamp>() {
        return Ok(t.as_microsecond());
    }
    let age = [('m', 60), ('h', 3600), ('d', 86_400)]
        .into_iter()
        .find_map(|(suffix, secs)| Some((s.strip_suffix(suffix)?, secs)))
        .and_then(|(n, secs): (&str, i64)| {
            let n: i64 = n.parse().ok().filter(|n| *n >= 0)?;
            n.checked_mul(secs)?.checked_mul(1_000_000)
        })
        .ok_or_else(|| {
            format!(
                "invalid `{name}` `{s}`: RFC 3339 (2026-12-01T00:00:00Z) or an age (30m, 24h, 7d)"
            )
        })?;
    Ok(now.as_microsecond().saturating_sub(age))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The query of `a=b&c=d` (no percent-encoding needed in these tests).
    fn query(text: &str) -> RunsQuery {
        let pairs: serde_json::Map<String, serde_json::Value> = text
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.into()))
            .collect();
        serde_json::from_value(pairs.into()).unwrap()
    }

    fn now() -> jiff::Timestamp {
        "2026-12-01T12:00:00Z".parse().unwrap()
    }

    #[test]
    fn times_are_rfc3339_or_an_age() {
        let at = |s| time("since", s, now());
        assert_eq!(at("24h"), at("2026-11-30T12:00:00Z"));
        assert_eq!(at("7d"), at("2026-11-24T12:00:00Z"));
        assert_eq!(at("30m"), at("2026-12-01T11:30:00Z"));
        for bad in ["h", "-3h", "3w", "yesterday", "1é"] {
            assert!(at(bad).unwrap_err().contains("`since`"), "{bad}");
        }
    }

    #[test]
    fn every_bad_part_names_its_parameter() {
        for (text, name) in [
            ("status=bogus", "`status`"),
            ("resource=nginx", "`resource`"),
            ("corrective=maybe", "`corrective`"),
            ("until=soon", "`until`"),
            ("after=x", "`after`"),
            ("limit=0", "`limit`"),
            ("limit=1001", "`limit`"),
            ("limit=100001&format=csv", "`limit`"),
            ("format=xml", "`format`"),
        ] {
            let q = query(text);
            let error = q.parse(List::Runs, now()).unwrap_err();
            assert!(error.contains(name), "{text}: {error}");
        }
        let q = query("status=skipped");
        assert!(q.parse(List::Events, now()).is_ok());
        assert!(q.parse(List::Runs, now()).is_err());
    }

    #[test]
    fn a_star_makes_a_prefix_and_links_keep_the_filters() {
        let q = query("node=web-*&resource=file:/etc/motd&since=24h&after=1.2");
        let f = q.parse(List::Runs, now()).unwrap();
        assert_eq!(f.node, Some(NodeMatch::Prefix("web-".into())));
        assert_eq!(f.limit, DEFAULT_LIMIT);
        let download = query("format=csv").parse(List::Runs, now()).unwrap();
        assert_eq!(download.limit, MAX_DOWNLOAD);
        let capped = query("format=json&limit=5000").parse(List::Runs, now());
        assert_eq!(capped.unwrap().limit, 5000);
        assert_eq!(
            q.query(&[("after", "5.6")]),
            "node=web-%2A&resource=file%3A%2Fetc%2Fmotd&since=24h&after=5.6"
        );
    }
}
