//! How the dashboard writes times, durations, versions and quantities.

/// `2026-12-01 07:45:12 UTC` from an RFC 3339 timestamp (as stored).
pub(super) fn when(rfc3339: &str) -> String {
    match rfc3339.parse::<jiff::Timestamp>() {
        Ok(t) => t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string(),
        Err(_) => rfc3339.to_owned(),
    }
}

/// `12 s ago`, `5 min ago`, `3 h ago`, `2 d ago`.
pub(super) fn ago(rfc3339: &str, now: jiff::Timestamp) -> String {
    let Ok(t) = rfc3339.parse::<jiff::Timestamp>() else {
        return rfc3339.to_owned();
    };
    let secs = now.duration_since(t).as_secs();
    match secs {
        s if s < 0 => "just now".to_owned(),
        s if s < 60 => format!("{s} s ago"),
        s if s < 3600 => format!("{} min ago", s / 60),
        s if s < 48 * 3600 => format!("{} h ago", s / 3600),
        s => format!("{} d ago", s / 86400),
    }
}

/// `850 ms`, `12.4 s`, `3 min 05 s`.
pub(super) fn duration_ms(ms: f64) -> String {
    if !ms.is_finite() || ms < 0.0 {
        return "-".to_owned();
    }
    if ms < 1000.0 {
        return format!("{ms:.0} ms");
    }
    let secs = ms / 1000.0;
    if secs < 60.0 {
        return format!("{secs:.1} s");
    }
    let whole = secs.round() as u64;
    format!("{} min {:02} s", whole / 60, whole % 60)
}

/// The first 12 characters of a version or commit, as git shows them.
pub(super) fn short(id: &str) -> String {
    id.chars().take(12).collect()
}

pub(super) fn or_dash(value: Option<&str>) -> String {
    value.unwrap_or("-").to_owned()
}

/// `512 B`, `64 MiB`, `1.5 GiB`: binary units, as `requests` are written.
pub(super) fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 || value.fract() == 0.0 {
        format!("{value:.0} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// `2`, `0.5`, `1.25` CPUs: no trailing zeros.
pub(super) fn cpus(cpu: f64) -> String {
    let text = format!("{cpu:.2}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_naturally() {
        assert_eq!(duration_ms(850.2), "850 ms");
        assert_eq!(duration_ms(12_400.0), "12.4 s");
        assert_eq!(duration_ms(185_000.0), "3 min 05 s");
        assert_eq!(duration_ms(f64::NAN), "-");
    }

    #[test]
    fn ages_count_back_from_now() {
        let now: jiff::Timestamp = "2026-12-01T12:00:00Z".parse().unwrap();
        assert_eq!(ago("2026-12-01T11:59:48Z", now), "12 s ago");
        assert_eq!(ago("2026-12-01T11:55:00Z", now), "5 min ago");
        assert_eq!(ago("2026-12-01T09:00:00Z", now), "3 h ago");
        assert_eq!(ago("2026-11-28T12:00:00Z", now), "3 d ago");
        assert_eq!(ago("not a time", now), "not a time");
    }

    #[test]
    fn quantities_read_as_written() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(64 * 1024 * 1024), "64 MiB");
        assert_eq!(bytes(3 * 1024 * 1024 * 1024 / 2), "1.5 GiB");
        assert_eq!(bytes(0), "0 B");
        assert_eq!(cpus(2.0), "2");
        assert_eq!(cpus(0.5), "0.5");
        assert_eq!(cpus(1.25), "1.25");
        assert_eq!(cpus(0.0), "0");
    }

    #[test]
    fn times_are_shown_in_utc() {
        assert_eq!(when("2026-12-01T07:45:12.5Z"), "2026-12-01 07:45:12 UTC");
    }
}
