//! What the agent says, and the one place that decides where it goes.
//!
//! Plain lines by default, each opening with its UTC time: one per change
//! (stdout) or failure (stderr) as it happens, a summary line at the end,
//! notes and warnings on stderr; scripts and tests parse them. When systemd
//! connected stderr to the journal, the same messages become native journal
//! entries with fields instead: the run's id, node and catalog version, the
//! resource and its status. With `log_format = "json"` (`--log-format
//! json`) each message is one JSON object on stdout with those same fields.

use std::io::Write;
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Duration;

use drover_catalog::Report;
use drover_catalog::report::{Event, ResourceReport, ResourceStatus, RunStatus};

use crate::systemd::journal::{self, Entry, Priority};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sink {
    Plain,
    Journal,
    Json,
}

/// How messages are written when asked for (`log_format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum LogFormat {
    /// Plain lines (or the journal, when systemd connected stderr to it).
    #[default]
    Text,
    /// One JSON object per message on stdout.
    Json,
}

static FORMAT: OnceLock<LogFormat> = OnceLock::new();

/// How much a run says (`--verbose`, `--debug`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub(crate) enum Verbosity {
    /// Changes, failures, warnings and the summary.
    #[default]
    Normal,
    /// Also every unchanged resource.
    Verbose,
    /// Also what the run does step by step (lock, facts, catalog, report).
    Debug,
}

static VERBOSITY: OnceLock<Verbosity> = OnceLock::new();

/// Chooses how much is said; the first call wins.
pub(crate) fn use_verbosity(verbosity: Verbosity) {
    let _ = VERBOSITY.set(verbosity);
}

fn verbosity() -> Verbosity {
    VERBOSITY.get().copied().unwrap_or_default()
}

/// A step of the run, said with `--debug` only.
pub(crate) fn debug(message: impl FnOnce() -> String) {
    if verbosity() < Verbosity::Debug {
        return;
    }
    let message = message();
    emit(
        || Entry::new(Priority::Debug, &message),
        || eprintln!("{}", stamped(&format!("debug: {message}"))),
    );
}

/// Chooses the format; call before anything is printed (the first call wins).
pub(crate) fn use_format(format: LogFormat) {
    let _ = FORMAT.set(format);
}

fn sink() -> Sink {
    static SINK: OnceLock<Sink> = OnceLock::new();
    *SINK.get_or_init(|| {
        if FORMAT.get() == Some(&LogFormat::Json) {
            Sink::Json
        } else if journal::stderr_is_journal() {
            Sink::Journal
        } else {
            Sink::Plain
        }
    })
}

/// Sends `entry` to the journal or as a JSON line when that is where
/// output goes, else (or when the journal refuses it) prints the plain form.
fn emit(entry: impl FnOnce() -> Entry, plain: impl FnOnce()) {
    match sink() {
        Sink::Journal => {
            if with_run_fields(entry()).send().is_err() {
                plain();
            }
        }
        Sink::Json => {
            let line = json_line(&with_run_fields(entry()));
            // A closed pipe is not worth a panic.
            let _ = writeln!(std::io::stdout().lock(), "{line}");
        }
        Sink::Plain => plain(),
    }
}

/// `{"timestamp", "level", "message", ...fields}`: the journal's fields,
/// named without their `DROVER_` prefix, in lower case.
fn json_line(entry: &Entry) -> String {
    let mut object = serde_json::Map::new();
    object.insert("timestamp".into(), now().into());
    object.insert("level".into(), level(entry.priority).into());
    object.insert("message".into(), entry.message.clone().into());
    for (name, value) in &entry.fields {
        let name = name
            .strip_prefix("DROVER_")
            .unwrap_or(name)
            .to_ascii_lowercase();
        object.insert(name, value.clone().into());
    }
    serde_json::Value::Object(object).to_string()
}

fn level(priority: Priority) -> &'static str {
    match priority {
        Priority::Emergency | Priority::Alert | Priority::Critical | Priority::Error => "error",
        Priority::Warning => "warning",
        Priority::Notice => "notice",
        Priority::Info => "info",
        Priority::Debug => "debug",
    }
}

/// Now, in UTC to the millisecond: what every plain line opens with.
fn now() -> String {
    format!("{:.3}", jiff::Timestamp::now())
}

/// `line` with the time in front.
fn stamped(line: &str) -> String {
    format!("{} {line}", now())
}

/// What ties an entry to its run.
#[derive(Debug, Clone)]
struct RunFields {
    run_id: String,
    node: String,
    catalog_version: Option<String>,
}

static RUN: Mutex<Option<RunFields>> = Mutex::new(None);

fn current_run() -> std::sync::MutexGuard<'static, Option<RunFields>> {
    RUN.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Entries carry the run's fields while this lives.
#[must_use]
#[derive(Debug)]
pub(crate) struct RunScope(());

pub(crate) fn run_scope(run_id: &str, node: &str) -> RunScope {
    *current_run() = Some(RunFields {
        run_id: run_id.to_owned(),
        node: node.to_owned(),
        catalog_version: None,
    });
    RunScope(())
}

impl RunScope {
    /// Known once the catalog (fresh or cached) is chosen.
    pub(crate) fn catalog_version(&self, version: &str) {
        if let Some(run) = current_run().as_mut() {
            run.catalog_version = Some(version.to_owned());
        }
    }
}

impl Drop for RunScope {
    fn drop(&mut self) {
        *current_run() = None;
    }
}

fn with_run_fields(mut entry: Entry) -> Entry {
    if let Some(run) = current_run().as_ref() {
        entry = entry
            .field("DROVER_RUN_ID", &run.run_id)
            .field("DROVER_NODE", &run.node);
        if let Some(version) = &run.catalog_version {
            entry = entry.field("DROVER_CATALOG_VERSION", version);
        }
    }
    entry
}

/// A note of the daemon (`drover-agent: stopping`).
pub(crate) fn info(message: &str) {
    emit(
        || Entry::new(Priority::Info, message),
        || eprintln!("{}", stamped(&format!("drover-agent: {message}"))),
    );
}

pub(crate) fn warning(message: &str) {
    emit(
        || Entry::new(Priority::Warning, message),
        || eprintln!("{}", stamped(&format!("warning: {message}"))),
    );
}

pub(crate) fn error(message: &str) {
    emit(
        || Entry::new(Priority::Error, message),
        || eprintln!("{}", stamped(&format!("error: {message}"))),
    );
}

/// `changed file:/x: content 3a4b5c6d.. -> 9c1d2e3f.., mode 0600 -> 0644`,
/// then the diff; failures and skips go to stderr.
pub(crate) fn print_resource(r: &ResourceReport) {
    let Some(line) = resource_line(r) else {
        if verbosity() >= Verbosity::Verbose {
            let line = format!("unchanged {}", r.id);
            emit(
                || resource_entry(r, &line),
                || println!("{}", stamped(&line)),
            );
        }
        return;
    };
    emit(
        || resource_entry(r, &line),
        || match r.status {
            ResourceStatus::Changed | ResourceStatus::Noop => {
                let text = change_text(r, &line);
                let _ = write!(std::io::stdout().lock(), "{}", stamped(&text));
            }
            _ => eprintln!("{}", stamped(&line)),
        },
    );
}

/// Everything said about a resource, in both forms: the plain text and
/// the journal entry's message and fields (for tests of what is shown).
#[cfg(test)]
pub(crate) fn everything_shown(r: &ResourceReport) -> String {
    let Some(line) = resource_line(r) else {
        return String::new();
    };
    let entry = resource_entry(r, &line);
    let fields: Vec<String> = entry
        .fields
        .iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect();
    format!(
        "{}\n{}\n{}",
        change_text(r, &line),
        entry.message,
        fields.join("\n")
    )
}

/// The line printed for a resource; none when it was already right.
fn resource_line(r: &ResourceReport) -> Option<String> {
    let error = || {
        let error = r.error.as_deref().unwrap_or("");
        error.strip_prefix("skipped: ").unwrap_or(error).to_owned()
    };
    let (verb, what) = match r.status {
        ResourceStatus::Unchanged => return None,
        ResourceStatus::Changed => ("changed", describe_events(r)),
        ResourceStatus::Noop => ("would change", describe_events(r)),
        ResourceStatus::Failed => ("failed", error()),
        ResourceStatus::Skipped => ("skipped", error()),
    };
    Some(format!("{verb} {}: {what}", r.id))
}

/// The line, a note per event message, then the diff.
fn change_text(r: &ResourceReport, line: &str) -> String {
    let mut out = format!("{line}\n");
    for (property, message) in event_notes(&r.events) {
        out.push_str(&format!("  {property}: {message}\n"));
    }
    if let Some(diff) = &r.diff {
        out.push_str(diff);
        if !diff.ends_with('\n') {
            out.push('\n');
        }
    }
    out
}

/// Failed 3 (error), skipped 4 (warning), changed 5 (notice).
fn resource_entry(r: &ResourceReport, line: &str) -> Entry {
    let priority = match r.status {
        ResourceStatus::Failed => Priority::Error,
        ResourceStatus::Skipped => Priority::Warning,
        ResourceStatus::Changed | ResourceStatus::Noop => Priority::Notice,
        ResourceStatus::Unchanged => Priority::Info,
    };
    let entry = Entry::new(priority, line)
        .field("DROVER_RESOURCE", r.id.to_string())
        .field("DROVER_STATUS", resource_status(r.status));
    match &r.diff {
        Some(diff) => entry.field("DROVER_DIFF", diff),
        None => entry,
    }
}

fn resource_status(status: ResourceStatus) -> &'static str {
    match status {
        ResourceStatus::Unchanged => "unchanged",
        ResourceStatus::Changed => "changed",
        ResourceStatus::Failed => "failed",
        ResourceStatus::Skipped => "skipped",
        ResourceStatus::Noop => "noop",
    }
}

/// The first line of each event's message (what apt would do, an exec's
/// output, why a service restarted), marked when there is more.
fn event_notes(events: &[Event]) -> impl Iterator<Item = (&str, String)> {
    events.iter().filter_map(|e| {
        let message = e.message.as_deref()?.trim();
        let mut lines = message.lines();
        let first = lines.next()?;
        let more = if lines.next().is_some() { " [...]" } else { "" };
        Some((e.property.as_str(), format!("{first}{more}")))
    })
}

pub(crate) fn describe_events(r: &ResourceReport) -> String {
    let short = |property: &str, v: &Option<String>| match v {
        None => "absent".to_owned(),
        Some(v) if property == "content" && v.len() > 8 => format!("{}..", &v[..8]),
        Some(v) => v.clone(),
    };
    let mut parts: Vec<String> = r
        .events
        .iter()
        .map(|e| match e.property.as_str() {
            "purged" => format!("purged {}", e.previous.as_deref().unwrap_or("")),
            p => format!("{p} {} -> {}", short(p, &e.previous), short(p, &e.desired)),
        })
        .collect();
    if r.refreshed {
        parts.push("refreshed".into());
    }
    parts.join(", ")
}

/// The run's summary line, on stdout or as the run's closing journal entry.
pub(crate) fn print_summary(report: &Report, elapsed: Duration) {
    let line = summary_line(&report.resources, report.noop, elapsed);
    // A closed pipe (`drover-agent apply ... | head`) is not worth a panic.
    emit(
        || summary_entry(report, &line),
        || {
            let _ = writeln!(std::io::stdout().lock(), "{}", stamped(&line));
        },
    );
}

/// Failed 3 (error), changed 5 (notice), unchanged 6 (info).
fn summary_entry(report: &Report, line: &str) -> Entry {
    let priority = match report.status {
        RunStatus::Failed => Priority::Error,
        RunStatus::Changed => Priority::Notice,
        RunStatus::Unchanged => Priority::Info,
    };
    let mut entry = Entry::new(priority, line).field("DROVER_STATUS", report.status.as_str());
    if let Some(error) = &report.error {
        entry = entry.field("DROVER_ERROR", error);
    }
    entry
}

/// `N resources: X changed, Y failed, Z skipped in T ms`; in noop, `X
/// would change`, since nothing changed (as the per-resource lines and the
/// systemd status say).
pub(crate) fn summary_line(resources: &[ResourceReport], noop: bool, elapsed: Duration) -> String {
    let count = |f: fn(ResourceStatus) -> bool| resources.iter().filter(|r| f(r.status)).count();
    let changed = count(|s| matches!(s, ResourceStatus::Changed | ResourceStatus::Noop));
    let failed = count(|s| s == ResourceStatus::Failed);
    let skipped = count(|s| s == ResourceStatus::Skipped);
    let verb = if noop { "would change" } else { "changed" };
    format!(
        "{} resources: {changed} {verb}, {failed} failed, {skipped} skipped in {} ms",
        resources.len(),
        elapsed.as_millis()
    )
}

#[cfg(test)]
mod tests {
    use drover_catalog::report::Event;

    use super::*;

    fn resource(status: ResourceStatus) -> ResourceReport {
        ResourceReport {
            id: "file:/etc/motd".to_string().try_into().unwrap(),
            status,
            corrective: false,
            events: vec![Event {
                property: "mode".into(),
                previous: Some("0600".into()),
                desired: Some("0644".into()),
                message: None,
            }],
            diff: Some("-a\n+b\n".into()),
            error: Some("skipped: dependency package:x failed".into()),
            refreshed: false,
            duration_ms: 0.0,
        }
    }

    fn fields(entry: &Entry) -> Vec<(&str, &str)> {
        entry.fields.iter().map(|(n, v)| (*n, v.as_str())).collect()
    }

    #[test]
    fn resource_lines_are_the_plain_output() {
        let line = |s| resource_line(&resource(s));
        assert_eq!(line(ResourceStatus::Unchanged), None);
        assert_eq!(
            line(ResourceStatus::Changed).unwrap(),
            "changed file:/etc/motd: mode 0600 -> 0644"
        );
        assert_eq!(
            line(ResourceStatus::Noop).unwrap(),
            "would change file:/etc/motd: mode 0600 -> 0644"
        );
        assert_eq!(
            line(ResourceStatus::Skipped).unwrap(),
            "skipped file:/etc/motd: dependency package:x failed"
        );
    }

    #[test]
    fn resource_entries_carry_priority_and_fields_of_the_run() {
        let r = resource(ResourceStatus::Changed);
        let scope = run_scope("run-1", "web-1");
        scope.catalog_version("v1");
        let entry = with_run_fields(resource_entry(&r, "changed file:/etc/motd: mode"));
        drop(scope);
        assert_eq!(u8::from(entry.priority), 5);
        assert_eq!(
            fields(&entry),
            [
                ("DROVER_RESOURCE", "file:/etc/motd"),
                ("DROVER_STATUS", "changed"),
                ("DROVER_DIFF", "-a\n+b\n"),
                ("DROVER_RUN_ID", "run-1"),
                ("DROVER_NODE", "web-1"),
                ("DROVER_CATALOG_VERSION", "v1"),
            ]
        );
        assert!(
            entry
                .fields
                .iter()
                .all(|(n, _)| journal::is_valid_field_name(n))
        );
        let failed = resource_entry(&resource(ResourceStatus::Failed), "failed");
        assert_eq!(u8::from(failed.priority), 3);
        let skipped = resource_entry(&resource(ResourceStatus::Skipped), "skipped");
        assert_eq!(u8::from(skipped.priority), 4);
        assert_eq!(
            fields(&with_run_fields(skipped)).len(),
            3,
            "no run fields outside a run"
        );
    }

    #[test]
    fn summary_entry_has_the_run_status() {
        let mut report = crate::testutil::report("r");
        report.status = RunStatus::Failed;
        report.error = Some("run interrupted".into());
        let entry = summary_entry(&report, "1 resources: ...");
        assert_eq!(u8::from(entry.priority), 3);
        assert_eq!(
            fields(&entry),
            [
                ("DROVER_STATUS", "failed"),
                ("DROVER_ERROR", "run interrupted")
            ]
        );
        report.status = RunStatus::Unchanged;
        assert_eq!(u8::from(summary_entry(&report, "").priority), 6);
    }
}
