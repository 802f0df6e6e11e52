//! The journal's native protocol: one entry per message, with fields that
//! `journalctl -o verbose` shows and `journalctl DROVER_RESOURCE=...` matches.
//!
//! `libsystemd` writes the entries to `/run/systemd/journal/socket`,
//! including the sealed-memfd fallback journald needs for entries larger
//! than a datagram (a long diff).

use anyhow::{Result, anyhow};
pub(crate) use libsystemd::logging::Priority;

pub(crate) const IDENTIFIER: &str = "drover-agent";

/// Whether systemd connected stderr to the journal. `$JOURNAL_STREAM` alone
/// is not enough: children inherit it with stderr redirected elsewhere.
pub(crate) fn stderr_is_journal() -> bool {
    let Some(value) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Ok(stat) = nix::sys::stat::fstat(libc::STDERR_FILENO) else {
        return false;
    };
    value
        .to_str()
        .is_some_and(|value| stream_matches(value, stat.st_dev, stat.st_ino))
}

/// `$JOURNAL_STREAM` is `DEVICE:INODE` of the stream systemd connected.
pub(crate) fn stream_matches(
    journal_stream: &str,
    device: libc::dev_t,
    inode: libc::ino_t,
) -> bool {
    let Some((d, i)) = journal_stream.split_once(':') else {
        return false;
    };
    d.parse() == Ok(device) && i.parse() == Ok(inode)
}

/// Upper case, digits and `_`, not starting with `_` (those are journald's
/// own) or a digit, at most 64 bytes; journald silently drops other fields.
pub(crate) fn is_valid_field_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with(|c: char| c == '_' || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// One journal entry: the message, its priority and the structured fields.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub priority: Priority,
    pub message: String,
    pub fields: Vec<(&'static str, String)>,
}

impl Entry {
    pub(crate) fn new(priority: Priority, message: impl Into<String>) -> Entry {
        Entry {
            priority,
            message: message.into(),
            fields: Vec::new(),
        }
    }

    pub(crate) fn field(mut self, name: &'static str, value: impl Into<String>) -> Entry {
        debug_assert!(
            is_valid_field_name(name),
            "journald drops the field `{name}`"
        );
        self.fields.push((name, value.into()));
        self
    }

    pub(crate) fn send(&self) -> Result<()> {
        let fields = self
            .fields
            .iter()
            .map(|(name, value)| (*name, value.as_str()))
            .chain([("SYSLOG_IDENTIFIER", IDENTIFIER)]);
        libsystemd::logging::journal_send(self.priority, &self.message, fields)
            .map_err(|e| anyhow!("cannot write to the journal: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd;

    use super::*;

    #[test]
    fn journal_stream_must_name_this_device_and_inode() {
        assert!(stream_matches("64769:1234567", 64769, 1_234_567));
        assert!(!stream_matches("64769:1234567", 64769, 1_234_568));
        assert!(!stream_matches("64770:1234567", 64769, 1_234_567));
        for malformed in ["", "64769", "64769:", ":1234567", "a:b", "64769:1234567:1"] {
            assert!(!stream_matches(malformed, 64769, 1_234_567), "{malformed}");
        }
    }

    #[test]
    fn journal_stream_matches_the_descriptor_it_was_taken_from() {
        let file = tempfile::tempfile().unwrap();
        let stat = nix::sys::stat::fstat(file.as_raw_fd()).unwrap();
        let value = format!("{}:{}", stat.st_dev, stat.st_ino);
        assert!(stream_matches(&value, stat.st_dev, stat.st_ino));
        let other = tempfile::tempfile().unwrap();
        let other = nix::sys::stat::fstat(other.as_raw_fd()).unwrap();
        assert!(!stream_matches(&value, other.st_dev, other.st_ino));
    }

    #[test]
    fn field_names_follow_journald_rules() {
        for good in ["MESSAGE", "DROVER_RUN_ID", "X1"] {
            assert!(is_valid_field_name(good), "{good}");
        }
        for bad in ["", "_PID", "1X", "drover", "DROVER-RUN", &"X".repeat(65)] {
            assert!(!is_valid_field_name(bad), "{bad}");
        }
    }
}
