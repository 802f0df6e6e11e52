//! Inline SVG charts drawn by the server: no script and no library, so they
//! show in any browser and with JavaScript off. Every text is escaped.
//!
//! One kind of chart over a chosen time range ([`Range`]): runs by status
//! stacked per time slot on the left axis, run durations as a second series
//! on their own right axis, dated ticks along the bottom and a legend. The
//! overview feeds it the fleet's hourly rollup, a node page its own runs.

use std::fmt::Write;

use super::format;
use super::page::escape;
use crate::db::HOUR_US;
use crate::fleet::HourBucket;

const WIDTH: f64 = 1200.0;
const HEIGHT: f64 = 260.0;
const LEFT: f64 = 52.0;
const RIGHT: f64 = 72.0;
const TOP: f64 = 30.0;
const BOTTOM: f64 = 26.0;
const MINUTE_US: i64 = 60_000_000;

/// A chart's time range, as the range links offer it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Range {
    /// As the `range` query parameter gives it.
    pub(super) param: &'static str,
    pub(super) label: &'static str,
    hours: i64,
    /// One bar per slot of this many minutes.
    slot_minutes: i64,
    /// A dated tick every this many hours.
    tick_hours: i64,
}

pub(super) const RANGES: [Range; 4] = [
    Range {
        param: "6h",
        label: "6 hours",
        hours: 6,
        slot_minutes: 15,
        tick_hours: 1,
    },
    Range {
        param: "24h",
        label: "24 hours",
        hours: 24,
        slot_minutes: 60,
        tick_hours: 3,
    },
    Range {
        param: "7d",
        label: "7 days",
        hours: 24 * 7,
        slot_minutes: 120,
        tick_hours: 24,
    },
    Range {
        param: "14d",
        label: "14 days",
        hours: 24 * 14,
        slot_minutes: 240,
        tick_hours: 48,
    },
];

impl Range {
    /// The range a `range` parameter names; the 24 hours when it is empty,
    /// `Err` with the choices when it names none.
    pub(super) fn parse(text: &str) -> Result<Range, String> {
        let text = text.trim();
        if text.is_empty() {
            return Ok(RANGES[1]);
        }
        RANGES.into_iter().find(|r| r.param == text).ok_or_else(|| {
            let choices: Vec<&str> = RANGES.iter().map(|r| r.param).collect();
            format!(
                "unknown chart range `{text}`: one of {}",
                choices.join(", ")
            )
        })
    }

    pub(super) fn hours(self) -> i64 {
        self.hours
    }

    fn slot_us(self) -> i64 {
        self.slot_minutes * MINUTE_US
    }

    /// The first and the end (exclusive) of the slots that end with the one
    /// holding `now_us`.
    pub(super) fn window(self, now_us: i64) -> (i64, i64) {
        let end = (now_us.div_euclid(self.slot_us()) + 1) * self.slot_us();
        (end - self.hours * HOUR_US, end)
    }
}

/// A link to one of the chart's ranges.
pub(super) struct RangeLink {
    pub label: &'static str,
    pub href: String,
    pub selected: bool,
}

/// The range links of a page whose other parameters are `query` (`k=v&...`,
/// or empty): each keeps them.
pub(super) fn range_links(path: &str, query: &str, chosen: Range) -> Vec<RangeLink> {
    RANGES
        .into_iter()
        .map(|r| {
            let sep = if query.is_empty() { "" } else { "&" };
            RangeLink {
                label: r.label,
                href: format!("{path}?{query}{sep}range={}", r.param),
                selected: r == chosen,
            }
        })
        .collect()
}

/// The runs of one time slot by status, and their durations.
#[derive(Debug, Clone, Default)]
pub(super) struct Slot {
    pub(super) unchanged: i64,
    pub(super) changed: i64,
    pub(super) noop: i64,
    pub(super) failed: i64,
    pub(super) duration_ms_sum: f64,
    pub(super) duration_ms_max: f64,
}

impl Slot {
    fn runs(&self) -> i64 {
        self.unchanged + self.changed + self.noop + self.failed
    }

    fn mean_ms(&self) -> f64 {
        match self.runs() {
            0 => 0.0,
            n => self.duration_ms_sum / n as f64,
        }
    }

    /// Adds one run: `status` as the report's (`changed` with `noop` counts
    /// as noop).
    pub(super) fn add(&mut self, status: &str, noop: bool, duration_ms: f64) {
        match status {
            "unchanged" => self.unchanged += 1,
            "changed" if noop => self.noop += 1,
            "changed" => self.changed += 1,
            _ => self.failed += 1,
        }
        self.duration_ms_sum += duration_ms;
        self.duration_ms_max = self.duration_ms_max.max(duration_ms);
    }
}

/// The data of one chart: its slots from `start_us`, and the duration
/// series, each point at its own time.
pub(super) struct Timeline {
    pub(super) range: Range,
    pub(super) start_us: i64,
    pub(super) slots: Vec<Slot>,
    /// (time µs, duration ms).
    pub(super) durations: Vec<(i64, f64)>,
    /// What a duration point is: "mean run duration" or "run duration".
    pub(super) duration_label: &'static str,
}

impl Timeline {
    /// Empty slots over `range` ending with the slot of `now_us`.
    pub(super) fn empty(range: Range, now_us: i64, duration_label: &'static str) -> Timeline {
        let (start_us, end_us) = range.window(now_us);
        let n = usize::try_from((end_us - start_us) / range.slot_us()).unwrap_or(0);
        Timeline {
            range,
            start_us,
            slots: vec![Slot::default(); n],
            durations: Vec::new(),
            duration_label,
        }
    }

    /// The slot a time falls in, if inside the range.
    pub(super) fn slot_mut(&mut self, at_us: i64) -> Option<&mut Slot> {
        let i = usize::try_from((at_us - self.start_us).div_euclid(self.range.slot_us())).ok()?;
        self.slots.get_mut(i)
    }

    /// The fleet's hourly rollup folded into the range's slots (never finer
    /// than an hour), with each slot's mean duration as the second series.
    pub(super) fn of_hours(range: Range, now_us: i64, hours: &[HourBucket]) -> Timeline {
        let mut t = Timeline::empty(range, now_us, "mean run duration");
        for h in hours {
            if let Some(slot) = t.slot_mut(h.hour * HOUR_US) {
                slot.unchanged += h.unchanged;
                slot.changed += h.changed;
                slot.noop += h.noop;
                slot.failed += h.failed;
                slot.duration_ms_sum += h.duration_ms_sum;
                slot.duration_ms_max = slot.duration_ms_max.max(h.duration_ms_max);
            }
        }
        let slot_us = range.slot_us();
        t.durations = (0_i64..)
            .zip(&t.slots)
            .filter(|(_, s)| s.runs() > 0)
            .map(|(i, s)| (t.start_us + i * slot_us + slot_us / 2, s.mean_ms()))
            .collect();
        t
    }

    fn end_us(&self) -> i64 {
        self.start_us + self.range.hours * HOUR_US
    }

    fn x(&self, at_us: i64) -> f64 {
        let span = (self.end_us() - self.start_us).max(1) as f64;
        LEFT + (at_us - self.start_us) as f64 / span * (WIDTH - LEFT - RIGHT)
    }
}

fn text(out: &mut String, x: f64, y: f64, anchor: &str, class: &str, s: &str) {
    let _ = write!(
        out,
        "<text class=\"{class}\" x=\"{x:.1}\" y=\"{y:.1}\" text-anchor=\"{anchor}\">{}</text>",
        escape(s)
    );
}

fn utc(us: i64, pattern: &str) -> String {
    jiff::Timestamp::from_microsecond(us)
        .map(|t| t.strftime(pattern).to_string())
        .unwrap_or_default()
}

/// The chart as SVG: `id` for tests and styles, `label` for screen readers.
pub(super) fn timeline(id: &str, label: &str, t: &Timeline) -> String {
    let mut out = String::with_capacity(32 * 1024);
    let _ = write!(
        out,
        "<svg id=\"{id}\" class=\"chart\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" width=\"{WIDTH}\" height=\"{HEIGHT}\" \
         role=\"img\" aria-label=\"{}\" data-range=\"{}\" xmlns=\"http://www.w3.org/2000/svg\">",
        escape(label),
        t.range.param
    );
    // Even, so the middle tick is a whole number of runs.
    let max_runs = t.slots.iter().map(Slot::runs).max().unwrap_or(0).max(2);
    let max_runs = max_runs + max_runs % 2;
    let max_ms = t.durations.iter().map(|d| d.1).fold(0.0, f64::max);
    axes(&mut out, max_runs, max_ms);
    time_ticks(&mut out, t);
    bars(&mut out, t, max_runs as f64);
    duration_line(&mut out, t, max_ms);
    legend(&mut out, t.duration_label);
    out.push_str("</svg>");
    out
}

fn plot_bottom() -> f64 {
    HEIGHT - BOTTOM
}

fn plot_height() -> f64 {
    HEIGHT - TOP - BOTTOM
}

/// Both vertical axes with three ticks each and grid lines: runs on the
/// left, durations on the right.
fn axes(out: &mut String, max_runs: i64, max_ms: f64) {
    let (bottom, right) = (plot_bottom(), WIDTH - RIGHT);
    for step in 0..=2 {
        let y = bottom - plot_height() * f64::from(step) / 2.0;
        let _ = write!(
            out,
            "<line class=\"grid\" x1=\"{LEFT}\" y1=\"{y:.1}\" x2=\"{right}\" y2=\"{y:.1}\"/>"
        );
        let runs = max_runs as f64 * f64::from(step) / 2.0;
        text(
            out,
            LEFT - 6.0,
            y + 4.0,
            "end",
            "runs-tick",
            &format!("{runs:.0}"),
        );
        if max_ms > 0.0 {
            let ms = max_ms * f64::from(step) / 2.0;
            text(
                out,
                right + 6.0,
                y + 4.0,
                "start",
                "duration-tick",
                &format::duration_ms(ms),
            );
        }
    }
    let _ = write!(
        out,
        "<line class=\"axis\" x1=\"{LEFT}\" y1=\"{bottom}\" x2=\"{right}\" y2=\"{bottom}\"/>\
         <line class=\"axis\" x1=\"{LEFT}\" y1=\"{TOP}\" x2=\"{LEFT}\" y2=\"{bottom}\"/>\
         <line class=\"axis\" x1=\"{right}\" y1=\"{TOP}\" x2=\"{right}\" y2=\"{bottom}\"/>"
    );
    text(out, LEFT - 6.0, TOP - 8.0, "end", "axis-title", "runs");
    text(
        out,
        right + 6.0,
        TOP - 8.0,
        "start",
        "axis-title",
        "duration",
    );
}

/// A tick every `tick_hours` on UTC boundaries, dated where the day
/// changes (and at the first tick), else just the time.
fn time_ticks(out: &mut String, t: &Timeline) {
    let step = t.range.tick_hours * HOUR_US;
    let mut at = (t.start_us.div_euclid(step) + 1) * step;
    let mut dated = false;
    while at < t.end_us() {
        let x = t.x(at);
        let midnight = at.rem_euclid(24 * HOUR_US) == 0;
        let label = if !dated || midnight {
            utc(at, "%b %d %H:%M")
        } else {
            utc(at, "%H:%M")
        };
        dated = true;
        let _ = write!(
            out,
            "<line class=\"tick\" x1=\"{x:.1}\" y1=\"{:.1}\" x2=\"{x:.1}\" y2=\"{:.1}\"/>",
            plot_bottom(),
            plot_bottom() + 4.0
        );
        text(out, x, HEIGHT - 8.0, "middle", "time-tick", &label);
        at += step;
    }
}

fn bars(out: &mut String, t: &Timeline, max_runs: f64) {
    let slot_us = t.range.slot_us();
    let scale = plot_height() / max_runs;
    for (i, slot) in (0_i64..).zip(&t.slots) {
        if slot.runs() == 0 {
            continue;
        }
        let from = t.start_us + i * slot_us;
        let (x0, x1) = (t.x(from), t.x(from + slot_us));
        let _ = write!(
            out,
            "<g class=\"slot\"><title>{} to {} UTC: {} runs ({} unchanged, {} changed, {} noop, {} failed), mean {}, longest {}</title>",
            escape(&utc(from, "%Y-%m-%d %H:%M")),
            escape(&utc(from + slot_us, "%H:%M")),
            slot.runs(),
            slot.unchanged,
            slot.changed,
            slot.noop,
            slot.failed,
            format::duration_ms(slot.mean_ms()),
            format::duration_ms(slot.duration_ms_max)
        );
        let mut y = plot_bottom();
        for (class, count) in [
            ("unchanged", slot.unchanged),
            ("changed", slot.changed),
            ("noop", slot.noop),
            ("failed", slot.failed),
        ] {
            if count == 0 {
                continue;
            }
            let h = count as f64 * scale;
            y -= h;
            let _ = write!(
                out,
                "<rect class=\"{class}\" x=\"{:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{h:.1}\"/>",
                x0 + 0.5,
                (x1 - x0 - 1.0).max(1.0)
            );
        }
        out.push_str("</g>");
    }
}

fn duration_line(out: &mut String, t: &Timeline, max_ms: f64) {
    if max_ms <= 0.0 || t.durations.is_empty() {
        return;
    }
    let y = |ms: f64| plot_bottom() - ms / max_ms * plot_height();
    let points: Vec<String> = t
        .durations
        .iter()
        .map(|&(at, ms)| format!("{:.1},{:.1}", t.x(at), y(ms)))
        .collect();
    let _ = write!(
        out,
        "<polyline class=\"duration\" points=\"{}\"><title>{}</title></polyline>",
        points.join(" "),
        t.duration_label
    );
    // Points to hover while they are few enough to tell apart.
    if t.durations.len() <= 200 {
        for &(at, ms) in &t.durations {
            let _ = write!(
                out,
                "<circle class=\"duration-point\" cx=\"{:.1}\" cy=\"{:.1}\" r=\"2.5\"><title>{} UTC: {}</title></circle>",
                t.x(at),
                y(ms),
                escape(&utc(at, "%Y-%m-%d %H:%M:%S")),
                format::duration_ms(ms)
            );
        }
    }
}

fn legend(out: &mut String, duration_label: &str) {
    let mut x = LEFT + 40.0;
    let y = 12.0;
    out.push_str("<g class=\"legend\">");
    for class in ["unchanged", "changed", "noop", "failed"] {
        let _ = write!(
            out,
            "<rect class=\"{class}\" x=\"{x:.1}\" y=\"{:.1}\" width=\"10\" height=\"10\"/>",
            y - 9.0
        );
        text(out, x + 14.0, y, "start", "legend-label", class);
        x += 24.0 + class.len() as f64 * 7.0;
    }
    let _ = write!(
        out,
        "<line class=\"duration\" x1=\"{x:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\"/>",
        y - 4.0,
        x + 18.0,
        y - 4.0
    );
    text(
        out,
        x + 22.0,
        y,
        "start",
        "legend-label",
        &format!("{duration_label} (right axis)"),
    );
    out.push_str("</g>");
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_790_000_000_000_000;

    #[test]
    fn ranges_parse_and_cover_their_hours() {
        for range in RANGES {
            assert_eq!(Range::parse(range.param), Ok(range));
            let (start, end) = range.window(NOW);
            assert_eq!(end - start, range.hours * HOUR_US);
            assert!(start <= NOW - range.hours * HOUR_US + range.slot_us() && NOW < end);
        }
        assert_eq!(Range::parse("").unwrap().param, "24h");
        assert!(Range::parse("3w").unwrap_err().contains("6h, 24h, 7d, 14d"));
    }

    #[test]
    fn the_fleet_chart_stacks_statuses_per_slot_with_a_dated_axis_and_a_legend() {
        let range = Range::parse("7d").unwrap();
        let hour = NOW / HOUR_US;
        let buckets = vec![
            HourBucket {
                hour,
                unchanged: 3,
                failed: 1,
                duration_ms_sum: 4000.0,
                duration_ms_max: 2500.0,
                ..HourBucket::default()
            },
            HourBucket {
                // Outside the 7 days: left out.
                hour: hour - 24 * 8,
                changed: 5,
                ..HourBucket::default()
            },
        ];
        let svg = timeline(
            "fleet-chart",
            "runs",
            &Timeline::of_hours(range, NOW, &buckets),
        );
        assert!(svg.starts_with("<svg id=\"fleet-chart\""));
        assert!(svg.contains("data-range=\"7d\""));
        assert_eq!(svg.matches("<g class=\"slot\">").count(), 1);
        assert!(svg.contains("4 runs (3 unchanged, 0 changed, 0 noop, 1 failed), mean 1.0 s"));
        // Seven days, a tick a day, each a date (at midnight).
        let ticks = svg.matches("class=\"time-tick\"").count();
        assert!((6..=7).contains(&ticks), "{ticks} ticks");
        assert!(svg.contains("mean run duration (right axis)"));
        assert!(svg.ends_with("</svg>"));
    }

    #[test]
    fn a_node_chart_places_each_run_at_its_time() {
        let range = Range::parse("6h").unwrap();
        let mut t = Timeline::empty(range, NOW, "run duration");
        for (ago_min, status, ms) in [(10, "changed", 800.0), (200, "failed", 1200.0)] {
            let at = NOW - ago_min * MINUTE_US;
            t.slot_mut(at).unwrap().add(status, false, ms);
            t.durations.push((at, ms));
        }
        assert!(t.slot_mut(NOW - 7 * HOUR_US).is_none(), "before the range");
        let svg = timeline("node-chart", "runs", &t);
        assert_eq!(svg.matches("<circle class=\"duration-point\"").count(), 2);
        assert_eq!(
            svg.matches("<rect class=\"failed\"").count(),
            2,
            "a bar and the legend"
        );
    }

    #[test]
    fn an_empty_range_still_draws_axes_and_escapes_labels() {
        let t = Timeline::empty(RANGES[0], NOW, "run duration");
        let svg = timeline("node-chart", "<b>", &t);
        assert!(svg.contains("<line class=\"axis\""));
        assert!(svg.contains("aria-label=\"&lt;b&gt;\""));
        assert!(!svg.contains("<g class=\"slot\">"));
    }
}
