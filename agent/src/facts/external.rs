//! External facts: every `*.json`, `*.toml` and executable file of the
//! facts directory (`facts_dir`, default `/etc/drover/facts.d`, Facter's
//! `facts.d`) adds facts, in file name order, each top-level key replacing
//! the gathered fact of that name (a later file wins over an earlier one).
//! An executable runs with no arguments and prints a JSON object; it gets
//! [`EXEC_TIMEOUT`] to finish. A file that cannot be read, parsed or run is
//! skipped with a warning naming it: one broken fact file must not stop the
//! node's runs.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use drover_catalog::Facts;

/// The default `facts_dir`.
pub(crate) const DEFAULT_FACTS_DIR: &str = "/etc/drover/facts.d";
/// How long an executable fact may take.
pub(crate) const EXEC_TIMEOUT: Duration = Duration::from_secs(30);

/// The external facts of `dir` (none when it does not exist), and a
/// warning per file skipped.
pub(crate) fn read(dir: &Path) -> (Facts, Vec<String>) {
    let mut facts = Facts::new();
    let mut warnings = Vec::new();
    let mut entries: Vec<std::path::PathBuf> = match fs_err::read_dir(dir) {
        Ok(entries) => entries.filter_map(|e| e.ok().map(|e| e.path())).collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return (facts, warnings),
        Err(e) => {
            warnings.push(format!("external facts were not read: {e}"));
            return (facts, warnings);
        }
    };
    entries.sort();
    for path in entries {
        match one(&path) {
            Ok(Some(more)) => facts.extend(more),
            Ok(None) => {}
            Err(e) => warnings.push(format!(
                "external fact file {} skipped: {e:#}",
                path.display()
            )),
        }
    }
    (facts, warnings)
}

/// The facts of one file; `None` for a file that is not a fact file (a
/// directory, a README): neither `.json`, `.toml` nor executable.
fn one(path: &Path) -> Result<Option<Facts>> {
    let meta = fs_err::metadata(path)?;
    if !meta.is_file() {
        return Ok(None);
    }
    let text = || fs_err::read_to_string(path);
    let value = match path.extension().and_then(|e| e.to_str()) {
        Some("json") => serde_json::from_str(&text()?).context("not JSON")?,
        Some("toml") => {
            let table: toml::Table = toml::from_str(&text()?).context("not TOML")?;
            serde_json::to_value(table)?
        }
        _ if meta.permissions().mode() & 0o111 != 0 => run(path)?,
        _ => return Ok(None),
    };
    match value {
        serde_json::Value::Object(map) => Ok(Some(map)),
        other => bail!("it holds {}, not an object of facts", kind(&other)),
    }
}

fn kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// Runs an executable fact and parses what it prints.
fn run(path: &Path) -> Result<serde_json::Value> {
    let mut child = Command::new(path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run it")?;
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if started.elapsed() >= EXEC_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            bail!("it ran for more than {} s", EXEC_TIMEOUT.as_secs());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let output = child.wait_with_output()?;
    if !status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(anyhow!("it exited with {status}: {}", stderr.trim()));
    }
    serde_json::from_slice(&output.stdout).context("it did not print JSON")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str, mode: u32) {
        let path = dir.join(name);
        fs_err::write(&path, text).unwrap();
        fs_err::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn json_toml_and_executables_add_facts_in_name_order() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "10-site.json",
            r#"{"site": "paris", "rack": 1}"#,
            0o644,
        );
        write(
            dir.path(),
            "20-rack.toml",
            "rack = 7\n[owner]\nteam = \"web\"\n",
            0o644,
        );
        write(
            dir.path(),
            "30-exec",
            "#!/bin/sh\necho '{\"generated\": true}'\n",
            0o755,
        );
        write(dir.path(), "README", "not a fact file\n", 0o644);
        let (facts, warnings) = read(dir.path());
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(
            serde_json::Value::Object(facts),
            serde_json::json!({
                "site": "paris",
                "rack": 7,
                "owner": { "team": "web" },
                "generated": true,
            })
        );
    }

    #[test]
    fn a_broken_file_is_skipped_with_a_warning_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "a.json", "{ not json", 0o644);
        write(dir.path(), "b.json", "[1, 2]", 0o644);
        write(dir.path(), "c", "#!/bin/sh\necho oops >&2\nexit 3\n", 0o755);
        write(dir.path(), "d", "#!/bin/sh\necho plain text\n", 0o755);
        write(dir.path(), "e.toml", "good = 1\n", 0o644);
        let (facts, warnings) = read(dir.path());
        assert_eq!(
            serde_json::Value::Object(facts),
            serde_json::json!({"good": 1})
        );
        assert_eq!(warnings.len(), 4, "{warnings:#?}");
        assert!(
            warnings[0].contains("a.json skipped: not JSON"),
            "{}",
            warnings[0]
        );
        assert!(
            warnings[1].contains("b.json skipped: it holds an array"),
            "{}",
            warnings[1]
        );
        assert!(
            warnings[2].contains("exit status: 3: oops"),
            "{}",
            warnings[2]
        );
        assert!(
            warnings[3].contains("did not print JSON"),
            "{}",
            warnings[3]
        );
    }

    #[test]
    fn no_directory_means_no_external_facts() {
        let (facts, warnings) = read(Path::new("/nonexistent/facts.d"));
        assert!(facts.is_empty() && warnings.is_empty());
    }
}
