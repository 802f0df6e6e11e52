//! Lists as files to save: JSON, or CSV (RFC 4180, CRLF lines) written by
//! the `csv` crate, for the dashboard's node list and the fleet-wide runs
//! and events. CSV comes either from the rows' JSON form, one column per
//! field (lists joined by spaces), or from chosen columns ([`csv_table`]);
//! either way a cell a spreadsheet would run as a formula (`=`, `+`, `-`,
//! `@` first) is prefixed with `'`, since node names, facts and messages
//! come from nodes.

use axum::http::{HeaderName, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value;

use crate::error::AppError;

/// Rows a download holds at most.
pub const MAX_ROWS: usize = 100_000;

/// What the `format` parameter asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Html,
    Json,
    Csv,
}

impl Format {
    pub fn parse(text: &str) -> Result<Format, AppError> {
        match text.trim() {
            "" | "html" => Ok(Format::Html),
            "json" => Ok(Format::Json),
            "csv" => Ok(Format::Csv),
            other => Err(AppError::BadRequest(format!(
                "unknown format `{other}`: html, json or csv"
            ))),
        }
    }
}

/// `rows` as `NAME.json` or `NAME.csv`, to be saved.
pub fn download<T: Serialize>(
    format: Format,
    name: &str,
    rows: &[T],
) -> Result<Response, AppError> {
    Ok(match format {
        Format::Csv => file(&format!("{name}.csv"), CSV, csv_of(rows)?),
        Format::Json | Format::Html => file(&format!("{name}.json"), JSON, json_text(rows)?),
    })
}

/// Where a download its cap cut goes on: give it as `after`, with the same
/// filters.
pub const NEXT_AFTER: HeaderName = HeaderName::from_static("drover-next-after");

/// `response` with [`NEXT_AFTER`] when `next` says the download was cut.
pub fn cut_at(mut response: Response, next: Option<&str>) -> Response {
    if let Some(value) = next.and_then(|n| HeaderValue::from_str(n).ok()) {
        response.headers_mut().insert(NEXT_AFTER, value);
    }
    response
}

/// The content types of the two kinds of download.
pub const CSV: &str = "text/csv; charset=utf-8";
pub const JSON: &str = "application/json";

/// `value` as pretty JSON.
pub fn json_text(value: &(impl Serialize + ?Sized)) -> Result<String, AppError> {
    serde_json::to_string_pretty(value)
        .map_err(|e| AppError::Internal(format!("rows as JSON: {e}")))
}

/// `body` as a file named `file_name` to be saved: never cached, never
/// sniffed into another type.
pub fn file(file_name: &str, content_type: &'static str, body: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type.to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!(
                    "attachment; filename=\"{}\"",
                    file_name.replace(['"', '\\'], "_")
                ),
            ),
            (header::CACHE_CONTROL, "no-store".to_owned()),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned()),
        ],
        body,
    )
        .into_response()
}

/// A header of the first row's field names, then a record per row.
fn csv_of<T: Serialize>(rows: &[T]) -> Result<String, AppError> {
    let fail = |e: &dyn std::fmt::Display| AppError::Internal(format!("rows as CSV: {e}"));
    let columns = match rows.first() {
        Some(first) => {
            let text = serde_json::to_string(first).map_err(|e| fail(&e))?;
            serde_json::from_str::<Fields>(&text)
                .map_err(|e| fail(&e))?
                .0
        }
        None => Vec::new(),
    };
    let values: Vec<Value> = rows
        .iter()
        .map(serde_json::to_value)
        .collect::<Result<_, _>>()
        .map_err(|e| fail(&e))?;
    let header: Vec<&str> = columns.iter().map(String::as_str).collect();
    let records = values
        .iter()
        .map(|row| columns.iter().map(|c| text_of(&row[c])).collect());
    csv_table(&header, records)
}

/// `header`, then each record, as CSV; formula-like cells defused.
pub fn csv_table(
    header: &[&str],
    records: impl Iterator<Item = Vec<String>>,
) -> Result<String, AppError> {
    let fail = |e: &dyn std::fmt::Display| AppError::Internal(format!("rows as CSV: {e}"));
    let mut out = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(Vec::new());
    out.write_record(header).map_err(|e| fail(&e))?;
    for record in records {
        out.write_record(record.iter().map(|cell| defuse(cell)))
            .map_err(|e| fail(&e))?;
    }
    let bytes = out.into_inner().map_err(|e| fail(&e))?;
    String::from_utf8(bytes).map_err(|e| fail(&e))
}

/// A JSON object's field names in the order they are written (a `Value`
/// object sorts them).
struct Fields(Vec<String>);

impl<'de> serde::Deserialize<'de> for Fields {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Fields, D::Error> {
        struct Names;
        impl<'de> serde::de::Visitor<'de> for Names {
            type Value = Fields;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a row as a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Fields, A::Error> {
                let mut names = Vec::new();
                while let Some((name, _)) = map.next_entry::<String, serde::de::IgnoredAny>()? {
                    names.push(name);
                }
                Ok(Fields(names))
            }
        }
        d.deserialize_map(Names)
    }
}

/// A JSON value as one cell.
fn text_of(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(text_of).collect::<Vec<_>>().join(" "),
        other => other.to_string(),
    }
}

/// A cell a spreadsheet would run as a formula, prefixed with `'`.
fn defuse(text: &str) -> String {
    if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{text}")
    } else {
        text.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct Line {
        name: &'static str,
        roles: Vec<&'static str>,
        duration_ms: Option<f64>,
        note: &'static str,
    }

    #[test]
    fn csv_quotes_what_needs_it_and_defuses_formulas() {
        let rows = [
            Line {
                name: "web-1",
                roles: vec!["base", "web"],
                duration_ms: Some(1.5),
                note: "a \"quoted\", line\nbreak",
            },
            Line {
                name: "=HYPERLINK(\"x\")",
                roles: vec![],
                duration_ms: None,
                note: "-1",
            },
        ];
        let text = csv_of(&rows).unwrap();
        let mut lines = csv::Reader::from_reader(text.as_bytes());
        assert_eq!(
            lines.headers().unwrap(),
            vec!["name", "roles", "duration_ms", "note"]
        );
        let records: Vec<csv::StringRecord> = lines.records().map(Result::unwrap).collect();
        assert_eq!(
            records[0],
            vec!["web-1", "base web", "1.5", "a \"quoted\", line\nbreak"]
        );
        assert_eq!(records[1], vec!["'=HYPERLINK(\"x\")", "", "", "'-1"]);
    }

    #[test]
    fn chosen_columns_are_quoted_only_when_they_must_be() {
        let records = [
            ["file:/etc/motd", "a,b"],
            ["say \"hi\"", "two\nlines"],
            ["=cmd|' /C calc'!A0", "-1,2"],
        ]
        .map(|r| r.map(str::to_owned).to_vec());
        assert_eq!(
            csv_table(&["a", "b"], records.into_iter()).unwrap(),
            "a,b\r\nfile:/etc/motd,\"a,b\"\r\n\"say \"\"hi\"\"\",\"two\nlines\"\r\n\
             '=cmd|' /C calc'!A0,\"'-1,2\"\r\n"
        );
    }

    #[test]
    fn formats_are_named_or_refused() {
        assert_eq!(Format::parse("").unwrap(), Format::Html);
        assert_eq!(Format::parse("csv").unwrap(), Format::Csv);
        assert!(Format::parse("xml").is_err());
    }
}
