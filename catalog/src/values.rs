//! Checks and conversions of single field values: paths, modes, ensure
//! words, memory sizes, CPU counts, taints.

use crate::model::{ContainerEnsure, Ensure, PackageEnsure, ServiceEnsure};

/// Why `path` is not an absolute, normalised path, if it is not.
pub(crate) fn path_problem(path: &str) -> Option<&'static str> {
    if path.contains('\0') {
        Some("it contains a NUL byte")
    } else if path.chars().any(char::is_control) {
        // A newline in a path splits every line-based log, report and
        // tool output that names it.
        Some("it contains a control character such as a newline or a tab")
    } else if !path.starts_with('/') {
        Some("it is not absolute")
    } else if path == "/" {
        None
    } else if path.ends_with('/') {
        Some("it ends with a slash")
    } else if path.contains("//") {
        Some("it contains `//`")
    } else if path.split('/').any(|s| s == "." || s == "..") {
        Some("it contains a `.` or `..` segment")
    } else {
        None
    }
}

/// Why a repo path given in `field` is not a plain path under `dir/`.
pub(crate) fn repo_path_problem(path: &str, dir: &str) -> Option<String> {
    let Some(rest) = path.strip_prefix(dir).and_then(|r| r.strip_prefix('/')) else {
        return Some(format!("it is not under `{dir}/`"));
    };
    if rest.is_empty()
        || rest
            .split('/')
            .any(|s| s.is_empty() || s == "." || s == "..")
    {
        return Some("it must be a plain relative path (no `..`, `.` or empty segments)".into());
    }
    None
}

pub(crate) fn ensure_present(s: &str) -> Option<Ensure> {
    match s {
        "present" => Some(Ensure::Present),
        "absent" => Some(Ensure::Absent),
        _ => None,
    }
}

pub(crate) fn ensure_service(s: &str) -> Option<ServiceEnsure> {
    match s {
        "running" => Some(ServiceEnsure::Running),
        "stopped" => Some(ServiceEnsure::Stopped),
        _ => None,
    }
}

pub(crate) fn ensure_container(s: &str) -> Option<ContainerEnsure> {
    match s {
        "running" => Some(ContainerEnsure::Running),
        "stopped" => Some(ContainerEnsure::Stopped),
        "absent" => Some(ContainerEnsure::Absent),
        _ => None,
    }
}

/// `installed` (or `present`), `absent`, or a Debian version: an upstream
/// version starts with a digit, after an optional `EPOCH:` (digits), so a
/// misspelt word (`instaled`) is an error, not a version apt cannot find.
pub(crate) fn ensure_package(s: &str) -> Option<PackageEnsure> {
    match s.trim() {
        "installed" | "present" => Some(PackageEnsure::Installed),
        "absent" => Some(PackageEnsure::Absent),
        v if is_debian_version(v) => Some(PackageEnsure::Version(v.to_owned())),
        _ => None,
    }
}

fn is_debian_version(v: &str) -> bool {
    let upstream = match v.split_once(':') {
        Some((epoch, rest)) if !epoch.is_empty() && epoch.bytes().all(|b| b.is_ascii_digit()) => {
            rest
        }
        Some(_) => return false,
        None => v,
    };
    upstream.starts_with(|c: char| c.is_ascii_digit())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".+-~:".contains(&b))
}

/// `"256m"`, `"1g"`, `"512MiB"`, `"1048576"`: binary units, as Docker reads them.
pub(crate) fn parse_memory(s: &str) -> Option<u64> {
    let s = s.trim().to_ascii_lowercase();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let number: f64 = number.parse().ok()?;
    let power = match unit.trim() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 1,
        "m" | "mb" | "mib" => 2,
        "g" | "gb" | "gib" => 3,
        "t" | "tb" | "tib" => 4,
        _ => return None,
    };
    let bytes = (number * 1024f64.powi(power)).round();
    (1.0..u64::MAX as f64)
        .contains(&bytes)
        .then_some(bytes as u64)
}

/// A number of CPUs as written: an integer, a float or a string of one.
pub(crate) fn cpus_number(value: &toml::Value) -> Option<f64> {
    match value {
        toml::Value::Integer(i) => Some(*i as f64),
        toml::Value::Float(f) => Some(*f),
        toml::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// CPUs (`0.5`, `2`) as millicpus.
pub(crate) fn cpus_to_milli(cpus: f64) -> Option<u64> {
    let milli = (cpus * 1000.0).round();
    (cpus.is_finite() && (1.0..1e12).contains(&milli)).then_some(milli as u64)
}

/// Why `s` is not a taint (or a toleration): `KEY=VALUE` or `KEY`, each
/// non-empty and of `[A-Za-z0-9._/-]`, so it reads the same in a label
/// selector, a report and a shell.
pub(crate) fn taint_problem(s: &str) -> Option<String> {
    let fits = |part: &str| {
        !part.is_empty()
            && part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '/' | '-'))
    };
    let (key, value) = match s.split_once('=') {
        Some((key, value)) => (key, Some(value)),
        None => (s, None),
    };
    if !fits(key) {
        return Some(
            "expected KEY=VALUE or KEY, the key non-empty and of [A-Za-z0-9._/-], e.g. dedicated=edge"
                .into(),
        );
    }
    match value {
        Some(value) if !fits(value) => Some(
            "the value after `=` must be non-empty and of [A-Za-z0-9._/-], e.g. dedicated=edge"
                .into(),
        ),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_package_ensure_is_a_word_it_knows_or_a_debian_version() {
        assert_eq!(ensure_package("installed"), Some(PackageEnsure::Installed));
        assert_eq!(ensure_package("absent"), Some(PackageEnsure::Absent));
        for version in ["2.10-3", "1:2.3.4-1+deb12u1", "0.9~rc1", "10"] {
            assert_eq!(
                ensure_package(version),
                Some(PackageEnsure::Version(version.into())),
                "{version}"
            );
        }
        for bad in [
            "instaled", "latest", "v1.2", "", "x:1.0", "1.0 beta", ":1.0",
        ] {
            assert_eq!(ensure_package(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn paths_must_be_absolute_and_normalised() {
        assert_eq!(path_problem("/etc/motd"), None);
        assert_eq!(path_problem("/"), None);
        for bad in [
            "etc/motd",
            "/etc/",
            "/etc//motd",
            "/etc/../motd",
            "/etc/./x",
            "/a\0b",
            "/etc/a\nb",
            "/etc/a\rb",
            "/etc/a\tb",
            "/etc/a\x1b[31mb",
            "/etc/a\u{7f}b",
            "",
        ] {
            assert!(path_problem(bad).is_some(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn repo_paths_stay_under_their_directory() {
        assert_eq!(repo_path_problem("files/motd", "files"), None);
        for bad in [
            "motd",
            "/files/motd",
            "files/../nodes.toml",
            "files/",
            "filesx/a",
        ] {
            assert!(repo_path_problem(bad, "files").is_some(), "{bad:?}");
        }
    }

    #[test]
    fn taints_are_a_key_and_an_optional_value() {
        for good in ["dedicated=edge", "gpu", "example.com/role=db-1", "a_b=c.d"] {
            assert_eq!(taint_problem(good), None, "{good}");
        }
        for bad in ["", "=edge", "dedicated=", "a b", "k=v=w", "k=v w", "ключ"] {
            assert!(taint_problem(bad).is_some(), "{bad:?}");
        }
    }

    #[test]
    fn memory_sizes_use_binary_units() {
        assert_eq!(parse_memory("256m"), Some(256 << 20));
        assert_eq!(parse_memory("1g"), Some(1 << 30));
        assert_eq!(parse_memory("1.5k"), Some(1536));
        assert_eq!(parse_memory("100"), Some(100));
        assert_eq!(parse_memory("lots"), None);
        assert_eq!(parse_memory("1x"), None);
        assert_eq!(cpus_to_milli(0.5), Some(500));
        assert_eq!(cpus_to_milli(0.0), None);
    }
}
