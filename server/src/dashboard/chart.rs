//! Inline SVG charts drawn by the server: no script and no library, so they
//! show in any browser and with JavaScript off. Every text is escaped.

use std::fmt::Write;

use super::format;
use super::page::escape;
use crate::db::{HOUR_US, ReportSummary};
use crate::fleet::HourBucket;

const WIDTH: f64 = 960.0;
const HEIGHT: f64 = 200.0;
const LEFT: f64 = 44.0;
const RIGHT: f64 = 56.0;
const TOP: f64 = 12.0;
const BOTTOM: f64 = 24.0;

fn plot_width() -> f64 {
    WIDTH - LEFT - RIGHT
}

fn plot_height() -> f64 {
    HEIGHT - TOP - BOTTOM
}

fn open(out: &mut String, id: &str, label: &str) {
    let _ = write!(
        out,
        "<svg id=\"{id}\" class=\"chart\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" width=\"{WIDTH}\" height=\"{HEIGHT}\" \
         role=\"img\" aria-label=\"{}\" xmlns=\"http://www.w3.org/2000/svg\">",
        escape(label)
    );
    let (bottom, right) = (HEIGHT - BOTTOM, WIDTH - RIGHT);
    let _ = write!(
        out,
        "<line class=\"axis\" x1=\"{LEFT}\" y1=\"{bottom}\" x2=\"{right}\" y2=\"{bottom}\"/>\
         <line class=\"axis\" x1=\"{LEFT}\" y1=\"{TOP}\" x2=\"{LEFT}\" y2=\"{bottom}\"/>"
    );
}

fn text(out: &mut String, x: f64, y: f64, anchor: &str, s: &str) {
    let _ = write!(
        out,
        "<text x=\"{x:.1}\" y=\"{y:.1}\" text-anchor=\"{anchor}\">{}</text>",
        escape(s)
    );
}

/// Runs per hour stacked by status, with the mean run duration as a line.
pub(super) fn fleet(buckets: &[HourBucket]) -> String {
    let mut out = String::with_capacity(16 * 1024);
    open(
        &mut out,
        "fleet-chart",
        "runs per hour by status, and mean run duration",
    );
    let n = buckets.len().max(1) as f64;
    let slot = plot_width() / n;
    let max_runs = buckets
        .iter()
        .map(HourBucket::runs)
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let max_ms = buckets
        .iter()
        .map(HourBucket::mean_duration_ms)
        .fold(0.0, f64::max);
    let scale = plot_height() / max_runs;
    let bottom = HEIGHT - BOTTOM;
    let mut line = String::new();
    for (i, b) in buckets.iter().enumerate() {
        let x = LEFT + i as f64 * slot;
        let hour = jiff::Timestamp::from_microsecond(b.hour * HOUR_US)
            .map(|t| t.strftime("%Y-%m-%d %H:00 UTC").to_string())
            .unwrap_or_default();
        let _ = write!(
            out,
            "<g><title>{}: {} runs ({} unchanged, {} changed, {} noop, {} failed), mean {}, longest {}</title>",
            escape(&hour),
            b.runs(),
            b.unchanged,
            b.changed,
            b.noop,
            b.failed,
            format::duration_ms(b.mean_duration_ms()),
            format::duration_ms(b.duration_ms_max)
        );
        let mut y = bottom;
        for (class, count) in [
            ("unchanged", b.unchanged),
            ("changed", b.changed),
            ("noop", b.noop),
            ("failed", b.failed),
        ] {
            if count == 0 {
                continue;
            }
            let h = count as f64 * scale;
            y -= h;
            let _ = write!(
                out,
                "<rect class=\"{class}\" x=\"{:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{h:.1}\"/>",
                x + 1.0,
                (slot - 2.0).max(1.0)
            );
        }
        out.push_str("</g>");
        if max_ms > 0.0 && b.runs() > 0 {
            let ly = bottom - b.mean_duration_ms() / max_ms * plot_height();
            let _ = write!(line, "{:.1},{ly:.1} ", x + slot / 2.0);
        }
        if i % 6 == 0 {
            let label = jiff::Timestamp::from_microsecond(b.hour * HOUR_US)
                .map(|t| t.strftime("%H:00").to_string())
                .unwrap_or_default();
            text(&mut out, x, HEIGHT - 8.0, "start", &label);
        }
    }
    if !line.is_empty() {
        let _ = write!(
            out,
            "<polyline class=\"duration\" points=\"{}\"><title>mean run duration</title></polyline>",
            line.trim_end()
        );
    }
    text(
        &mut out,
        LEFT - 6.0,
        TOP + 10.0,
        "end",
        &format!("{max_runs}"),
    );
    text(&mut out, LEFT - 6.0, bottom, "end", "0");
    if max_ms > 0.0 {
        text(
            &mut out,
            WIDTH - RIGHT + 6.0,
            TOP + 10.0,
            "start",
            &format::duration_ms(max_ms),
        );
        text(&mut out, WIDTH - RIGHT + 6.0, TOP + 24.0, "start", "mean");
    }
    out.push_str("</svg>");
    out
}

/// One bar per run, oldest left: its height is the run's duration, its
/// colour the run's status.
pub(super) fn node(runs: &[&ReportSummary]) -> String {
    let mut out = String::with_capacity(8 * 1024);
    open(
        &mut out,
        "node-chart",
        "duration and status of each run shown below",
    );
    let n = runs.len().max(1) as f64;
    let slot = (plot_width() / n).min(40.0);
    let max_ms = runs.iter().map(|r| r.duration_ms).fold(0.0, f64::max);
    let bottom = HEIGHT - BOTTOM;
    for (i, run) in runs.iter().rev().enumerate() {
        let x = LEFT + i as f64 * slot;
        let h = if max_ms > 0.0 {
            (run.duration_ms / max_ms * plot_height()).max(2.0)
        } else {
            2.0
        };
        let class = match run.status.as_str() {
            "changed" if run.noop => "noop",
            "unchanged" => "unchanged",
            "changed" => "changed",
            _ => "failed",
        };
        let _ = write!(
            out,
            "<rect class=\"{class}\" x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{h:.1}\">\
             <title>{}: {}{}, {}</title></rect>",
            x + 1.0,
            bottom - h,
            (slot - 2.0).max(1.0),
            escape(&format::when(&run.finished_at)),
            escape(&run.status),
            if run.noop { " (noop)" } else { "" },
            format::duration_ms(run.duration_ms),
        );
    }
    text(
        &mut out,
        LEFT - 6.0,
        TOP + 10.0,
        "end",
        &format::duration_ms(max_ms),
    );
    text(&mut out, LEFT - 6.0, bottom, "end", "0");
    if let (Some(first), Some(last)) = (runs.last(), runs.first()) {
        text(
            &mut out,
            LEFT,
            HEIGHT - 8.0,
            "start",
            &format::when(&first.finished_at),
        );
        text(
            &mut out,
            WIDTH - RIGHT,
            HEIGHT - 8.0,
            "end",
            &format::when(&last.finished_at),
        );
    }
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fleet_chart_stacks_statuses_and_escapes_nothing_unsafe() {
        let buckets = vec![
            HourBucket {
                hour: 490_000,
                unchanged: 3,
                failed: 1,
                duration_ms_sum: 4000.0,
                duration_ms_max: 2500.0,
                ..HourBucket::default()
            },
            HourBucket {
                hour: 490_001,
                ..HourBucket::default()
            },
        ];
        let svg = fleet(&buckets);
        assert!(svg.starts_with("<svg id=\"fleet-chart\""));
        assert_eq!(svg.matches("<rect class=\"unchanged\"").count(), 1);
        assert_eq!(svg.matches("<rect class=\"failed\"").count(), 1);
        assert!(svg.contains("4 runs (3 unchanged, 0 changed, 0 noop, 1 failed), mean 1.0 s"));
        assert!(svg.ends_with("</svg>"));
    }

    #[test]
    fn an_empty_history_still_draws_axes() {
        let svg = node(&[]);
        assert!(svg.contains("<line class=\"axis\""));
        assert!(!svg.contains("<rect"));
    }
}
