//! What a sensitive resource may show: hashes instead of values.
//!
//! The kinds already keep their free text (command output, journal lines,
//! a container's logs, a `validate` command's output, a shadow tool's
//! arguments) out of what they return for a sensitive resource. Then the
//! engine passes every sensitive resource's report through [`hide`]:
//! event values become `sha256:` and 12 hex digits unless they are words
//! of drover's own (`present`, `running`, ...) or values that cannot hold
//! a secret (mode, content hash, ids); there is no diff; and any text of
//! the spec that still shows up in a message or error is replaced.

use drover_catalog::Spec;
use drover_catalog::model::sha256_hex;
use drover_catalog::report::{Event, ResourceReport};

/// Said in place of output that a sensitive resource does not show.
pub(crate) const OUTPUT_HIDDEN: &str = "(output hidden: the resource is sensitive)";

/// What replaces the spec's own text in messages and errors.
pub(crate) const HIDDEN: &str = "(sensitive)";

/// Hex digits of the sha256 an event shows instead of a value.
const HASH_DIGITS: usize = 12;

/// Properties whose values cannot hold a secret: an octal mode, a content
/// hash, a unit file's hash, a path found on disk, numeric ids.
const SAFE_PROPERTIES: [&str; 6] = ["mode", "content", "unit", "purged", "uid", "gid"];

/// drover's own words for states, which say nothing about the spec's values.
const STATE_WORDS: [&str; 15] = [
    "present",
    "absent",
    "running",
    "stopped",
    "restarted",
    "installed",
    "notrun",
    "0",
    "true",
    "false",
    "not loaded",
    "file",
    "directory",
    "symlink",
    "special file",
];

/// Spec text shorter than this is not searched for in messages: a
/// sensitive value is longer, and short words (`root`, `/`) are everywhere.
const MIN_SCRUBBED_LEN: usize = 6;

/// Makes a sensitive resource's report show hashes only.
pub(crate) fn hide(report: &mut ResourceReport, spec: &Spec) {
    let texts = spec_texts(spec);
    report.diff = None;
    for event in &mut report.events {
        hide_event(event);
        event.message = event.message.take().map(|m| scrub(&m, &texts));
    }
    report.error = report.error.take().map(|e| scrub(&e, &texts));
}

fn hide_event(event: &mut Event) {
    if SAFE_PROPERTIES.contains(&event.property.as_str()) {
        return;
    }
    for value in [&mut event.previous, &mut event.desired] {
        if let Some(v) = value.as_mut()
            && !STATE_WORDS.contains(&v.as_str())
        {
            *v = hashed(v);
        }
    }
}

/// `sha256:` and the first hex digits of the value's sha256.
pub(crate) fn hashed(value: &str) -> String {
    format!("sha256:{}", &sha256_hex(value.as_bytes())[..HASH_DIGITS])
}

/// The spec's strings that a message could quote (not its id's own name,
/// which the report shows anyway), longest first.
fn spec_texts(spec: &Spec) -> Vec<String> {
    let json = serde_json::to_value(spec).expect("a spec serializes");
    let mut texts = Vec::new();
    collect_strings(&json, &mut texts);
    texts.retain(|t| t.len() >= MIN_SCRUBBED_LEN && t != spec.name());
    texts.sort_by(|a, b| b.len().cmp(&a.len()).then(a.cmp(b)));
    texts.dedup();
    texts
}

fn collect_strings(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::String(s) => out.push(s.clone()),
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_strings(v, out)),
        serde_json::Value::Object(map) => map.values().for_each(|v| collect_strings(v, out)),
        _ => {}
    }
}

fn scrub(text: &str, texts: &[String]) -> String {
    let mut out = text.to_owned();
    for t in texts {
        if out.contains(t.as_str()) {
            out = out.replace(t.as_str(), HIDDEN);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use drover_catalog::model::{Command, ExecSpec};
    use drover_catalog::report::ResourceStatus;

    use super::*;
    use crate::resources::event;

    #[test]
    fn values_become_hashes_and_state_words_stay() {
        let spec = Spec::Exec(Box::new(ExecSpec {
            name: "set-password".into(),
            command: Command::Argv(vec!["/usr/bin/setpw".into(), "s3cret-value".into()]),
            cwd: None,
            env: Default::default(),
            user: None,
            creates: None,
            unless: None,
            onlyif: None,
            refreshonly: false,
            timeout_secs: None,
        }));
        let mut report = ResourceReport::new(
            "exec:set-password".to_string().try_into().unwrap(),
            ResourceStatus::Failed,
        );
        report.events = vec![
            event("ensure", None, Some("present".into())),
            event("target", Some("/old".into()), Some("s3cret-value".into())),
            event("mode", Some("0600".into()), Some("0644".into())),
        ];
        report.events[0].message = Some("ran s3cret-value".into());
        report.diff = Some("+s3cret-value\n".into());
        report.error = Some("cannot run `/usr/bin/setpw s3cret-value` for set-password".into());
        hide(&mut report, &spec);
        let json = serde_json::to_string(&report).unwrap();
        assert!(!json.contains("s3cret"), "{json}");
        assert_eq!(report.diff, None);
        assert_eq!(report.events[0].desired.as_deref(), Some("present"));
        assert_eq!(
            report.events[1].desired.as_deref(),
            Some(hashed("s3cret-value").as_str())
        );
        assert!(
            report.events[1]
                .desired
                .as_deref()
                .unwrap()
                .starts_with("sha256:")
        );
        assert_eq!(report.events[2].previous.as_deref(), Some("0600"));
        assert_eq!(report.events[0].message.as_deref(), Some("ran (sensitive)"));
        assert_eq!(
            report.error.as_deref(),
            Some("cannot run `(sensitive) (sensitive)` for set-password"),
            "the id's own name stays"
        );
    }
}
