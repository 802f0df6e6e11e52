//! The overview's query string: the filter as typed (the node API's
//! parse), the order, the chart's range and the page cursor, each part that
//! cannot be used said and left at its default; the links that keep them.

use serde::Deserialize;

use super::super::chart;
use crate::fleet::{Cursor, Filter, FilterText, Sort, SortKey};

/// The query string, as typed into the filter form (empty means unset).
#[derive(Debug, Default, Deserialize)]
pub(in crate::dashboard) struct Params {
    #[serde(flatten)]
    pub(super) filter: FilterText,
    /// `KEY` or `-KEY` (descending); triage order when empty.
    #[serde(default)]
    pub(super) sort: String,
    /// The chart's range (`6h`, `24h`, `7d`, `14d`).
    #[serde(default)]
    pub(super) range: String,
    #[serde(default)]
    pub(super) after: String,
    /// `json` or `csv`: every matching node as a download.
    #[serde(default)]
    pub(super) format: String,
}

/// What the query string asks for once read: each part that cannot be used
/// is left at its default and said in `errors`.
pub(super) struct Asked {
    pub(super) filter: Filter,
    pub(super) sort: Sort,
    pub(super) range: chart::Range,
    pub(super) after: Option<Cursor>,
    pub(super) errors: Vec<String>,
}

impl Params {
    /// The filter (the same parse as the node API's), the order, the
    /// chart's range and the page.
    pub(super) fn read(&self) -> Asked {
        let (filter, filter_error) = self.filter.parse();
        let mut errors: Vec<String> = filter_error.into_iter().collect();
        let sort = match self.sort.trim() {
            "" => Sort::default(),
            text => Sort::parse(text).unwrap_or_else(|e| {
                errors.push(e);
                Sort::default()
            }),
        };
        let range = chart::Range::parse(&self.range).unwrap_or_else(|e| {
            errors.push(e);
            chart::RANGES[1]
        });
        let after = match self.after.trim() {
            "" => None,
            text => sort.parse_cursor(text).map_or_else(
                |e| {
                    errors.push(format!("{e}; showing the first page"));
                    None
                },
                Some,
            ),
        };
        Asked {
            filter,
            sort,
            range,
            after,
            errors,
        }
    }

    /// This query string with the order, the range and the page replaced
    /// (the defaults are left out).
    pub(super) fn href_with(&self, sort: &str, range: &str, after: Option<&str>) -> String {
        let range = Some(range).filter(|r| *r != chart::RANGES[1].param);
        let query = self.filter.query(&[
            ("sort", link_sort(sort)),
            ("range", range.unwrap_or_default()),
            ("after", after.unwrap_or_default()),
        ]);
        if query.is_empty() {
            "/".to_owned()
        } else {
            format!("/?{query}")
        }
    }

    /// This query string with `after` replaced (`None`: the first page).
    pub(super) fn href(&self, asked: &Asked, after: Option<&str>) -> String {
        self.href_with(&asked.sort.as_param(), asked.range.param, after)
    }

    /// The download of this list (every page) as `json` or `csv`.
    pub(super) fn download_href(&self, asked: &Asked, format: &str) -> String {
        let sort = asked.sort.as_param();
        let query = self
            .filter
            .query(&[("sort", link_sort(&sort)), ("format", format)]);
        format!("/?{query}")
    }
}

/// `sort` as a link gives it: left out when it is the default order.
fn link_sort(sort: &str) -> &str {
    if sort == Sort::default().as_param() {
        ""
    } else {
        sort
    }
}

/// A column heading of the node table: a link that sorts by it (the other
/// way when it is the order already).
pub(super) struct Heading {
    pub(super) label: &'static str,
    pub(super) href: String,
    /// `ascending`/`descending` on the column the list is sorted by.
    pub(super) aria_sort: &'static str,
}

pub(super) fn headings(params: &Params, asked: &Asked) -> Vec<Heading> {
    [
        (SortKey::Name, "node"),
        (SortKey::State, "state"),
        (SortKey::Environment, "environment"),
        (SortKey::Roles, "roles"),
        (SortKey::LastRun, "last run"),
        (SortKey::Duration, "duration"),
        (SortKey::Commit, "commit"),
    ]
    .into_iter()
    .map(|(key, label)| Heading {
        label,
        href: params.href_with(&asked.sort.toggled(key).as_param(), asked.range.param, None),
        aria_sort: match (asked.sort.key == key, asked.sort.descending) {
            (false, _) => "none",
            (true, false) => "ascending",
            (true, true) => "descending",
        },
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::FilterText;

    #[test]
    fn a_bad_fact_filter_is_explained_and_ignored() {
        let params = Params {
            filter: FilterText {
                fact: "os.id".into(),
                q: " web ".into(),
                ..FilterText::default()
            },
            ..Params::default()
        };
        let asked = params.read();
        assert!(asked.filter.fact.is_none());
        assert_eq!(asked.filter.name.as_deref(), Some("web"));
        assert!(asked.errors[0].contains("KEY=VALUE"));
    }

    #[test]
    fn paging_links_keep_the_filters() {
        let params = Params {
            filter: FilterText {
                state: "failed".into(),
                fact: "os.id=debian 12".into(),
                ..FilterText::default()
            },
            ..Params::default()
        };
        let asked = params.read();
        assert_eq!(
            params.href(&asked, Some("[0,\"web-100\"]")),
            "/?state=failed&fact=os.id%3Ddebian%2012&after=%5B0%2C%22web-100%22%5D"
        );
        assert_eq!(Params::default().href(&Params::default().read(), None), "/");
    }

    #[test]
    fn sorting_and_ranges_are_kept_and_bad_ones_explained() {
        let params = Params {
            sort: "-last_run".into(),
            range: "7d".into(),
            after: "web-1".into(),
            ..Params::default()
        };
        let asked = params.read();
        assert_eq!(asked.sort.as_param(), "-last_run");
        assert_eq!(asked.range.param, "7d");
        assert!(asked.after.is_none(), "a name is no cursor of this order");
        assert!(
            asked.errors[0].contains("does not fit"),
            "{:?}",
            asked.errors
        );
        assert_eq!(params.href(&asked, None), "/?sort=-last_run&range=7d");
        let names = headings(&params, &asked);
        assert_eq!(names[4].aria_sort, "descending");
        assert_eq!(names[4].href, "/?sort=last_run&range=7d");
        assert_eq!(names[0].href, "/?sort=name&range=7d");
        let bad = Params {
            sort: "size".into(),
            range: "1y".into(),
            ..Params::default()
        }
        .read();
        assert_eq!(bad.sort, Sort::default());
        assert_eq!(bad.errors.len(), 2, "{:?}", bad.errors);
    }
}
