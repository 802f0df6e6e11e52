//! What the seeded fleet must look like, read back through the server's own
//! queries (`fleet::counts`, `fleet::page`, `fleet::fleet_history`,
//! `db::reports`): the state the dashboard will compute for each node, its
//! last run being its newest report, the chart counting every report, a
//! resource event for every resource a report did not leave unchanged, and
//! the probe node's history. Seeding fails loudly when they disagree.

use std::collections::BTreeMap;

use anyhow::{Result, bail};
use drover_catalog::report::RunStatus;
use drover_server::config::DEFAULT_UNRESPONSIVE_SECS;
use drover_server::db::{self, Db};
use drover_server::fleet::{self, Context, Filter, NodeState};

use crate::runs::Run;
use crate::seed::Fleet;
use crate::site::ENVIRONMENT;

/// Runs the page checks compare: the node page shows this many.
const HISTORY: u32 = 50;

impl Fleet {
    /// Nodes whose last report finished before this (µs) are unresponsive,
    /// by the server's default `unresponsive_after_secs`.
    fn unresponsive_before_us(&self) -> i64 {
        let after = i64::try_from(DEFAULT_UNRESPONSIVE_SECS).unwrap_or(i64::MAX);
        self.now.as_microsecond() - after * 1_000_000
    }

    /// What the fleet is measured against, as a server with the default
    /// settings measures it now.
    pub(crate) fn context(&self) -> Context {
        Context {
            unresponsive_before_us: self.unresponsive_before_us(),
            held: Default::default(),
            heads: BTreeMap::from([(ENVIRONMENT.to_owned(), self.head.clone())]),
        }
    }

    /// Each node's state, in name order: what the dashboard computes from
    /// its last run.
    pub(crate) fn states(&self) -> Vec<NodeState> {
        let cutoff = self.unresponsive_before_us();
        self.last.iter().map(|run| state(run, cutoff)).collect()
    }

    /// Nodes whose last run used the cached catalog or another commit than the head.
    pub(crate) fn is_stale(&self, run: &Run) -> bool {
        run.cached || run.commit != self.head
    }

    pub(crate) fn state_counts(&self) -> BTreeMap<NodeState, i64> {
        let mut counts = BTreeMap::new();
        for state in self.states() {
            *counts.entry(state).or_default() += 1;
        }
        counts
    }
}

/// The state of a node whose last run is `run`, as `fleet` computes it.
fn state(run: &Run, unresponsive_before_us: i64) -> NodeState {
    if run.finished.as_microsecond() < unresponsive_before_us {
        return NodeState::Unresponsive;
    }
    match run.status {
        RunStatus::Failed => NodeState::Failed,
        RunStatus::Changed if run.noop => NodeState::NoopPending,
        RunStatus::Changed => NodeState::Changed,
        RunStatus::Unchanged => NodeState::Unchanged,
    }
}

/// Reads the fleet back through the server's queries; every way it
/// differs from what was seeded, or an error.
pub(crate) async fn check(db: &Db, fleet: &Fleet) -> Result<()> {
    let ctx = fleet.context();
    let mut wrong = Vec::new();

    let counts = fleet::counts(db, &ctx).await?;
    let want = fleet.state_counts();
    let stale = fleet.last.iter().filter(|r| fleet.is_stale(r)).count() as i64;
    if counts.by_state != want || counts.stale != stale {
        wrong.push(format!(
            "the overview counts {:?} ({} stale), the seeder made {want:?} ({stale} stale)",
            counts.by_state, counts.stale
        ));
    }

    // Every node, in name order, with its state and its last run; and its
    // last run is its newest report (the relation the server keeps).
    let states = fleet.states();
    let mut after: Option<String> = None;
    let mut seen = 0;
    loop {
        let by_name = fleet::Sort::parse("name").expect("a sort key");
        let cursor = after
            .as_deref()
            .map(|a| by_name.parse_cursor(a))
            .transpose();
        let cursor = cursor.map_err(anyhow::Error::msg)?;
        let page =
            fleet::page(db, &ctx, &Filter::default(), by_name, cursor.as_ref(), 1000).await?;
        for line in &page.nodes {
            let i = seen;
            if fleet.names.get(i) != Some(&line.name) {
                bail!(
                    "seeding is inconsistent: node {} is listed where {:?} was expected",
                    line.name,
                    fleet.names.get(i)
                );
            }
            seen += 1;
            let last = &fleet.last[i];
            if line.state != states[i] || line.stale != fleet.is_stale(last) {
                wrong.push(format!(
                    "{} is {:?} (stale {}), expected {:?} (stale {})",
                    line.name,
                    line.state,
                    line.stale,
                    states[i],
                    fleet.is_stale(last)
                ));
            }
            if line.last_run_id.as_deref() != Some(&last.run_id) {
                wrong.push(format!(
                    "{}'s last run is {:?}, not {}",
                    line.name, line.last_run_id, last.run_id
                ));
            }
            if line.roles != fleet.roles[i]
                || line.catalog_version.as_deref() != Some(&fleet.fresh[i].version)
            {
                wrong.push(format!(
                    "{}'s roles or served catalog are not the seeded ones",
                    line.name
                ));
            }
            let newest = db::reports(db, &line.name, 1, None).await?;
            if newest.first().map(|r| r.id.as_str()) != Some(&last.run_id) {
                wrong.push(format!(
                    "{}'s last_run_id is not its newest report",
                    line.name
                ));
            }
        }
        if wrong.len() > 20 {
            break;
        }
        match page.next_after {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    if seen != fleet.names.len() && wrong.len() <= 20 {
        wrong.push(format!(
            "{seen} nodes are listed, {} were seeded",
            fleet.names.len()
        ));
    }

    // The chart's hourly rollup counts every report (15 days: the oldest
    // report is 13.5 days old).
    let hours = fleet::fleet_history(db, fleet.now.as_microsecond(), 15 * 24).await?;
    let charted: i64 = hours.iter().map(|h| h.runs()).sum();
    if charted != fleet.reports as i64 {
        wrong.push(format!(
            "the chart counts {charted} runs of {} reports",
            fleet.reports
        ));
    }

    // One resource event per resource a report did not leave unchanged,
    // written by the server's report insert (the fleet-wide lists).
    let events = db::events::stored(db).await?;
    if u64::try_from(events).ok() != Some(fleet.runs.events) {
        wrong.push(format!(
            "{events} resource events are stored, the reports hold {}",
            fleet.runs.events
        ));
    }

    // The probe's history, as its node page pages it.
    if let Some(i) = fleet.probe {
        let name = &fleet.names[i];
        let history = db::reports(db, name, HISTORY, None).await?;
        let got: Vec<&str> = history.iter().map(|r| r.id.as_str()).collect();
        let want: Vec<&str> = fleet
            .probe_runs
            .iter()
            .take(HISTORY as usize)
            .map(|r| r.run_id.as_str())
            .collect();
        if got != want {
            wrong.push(format!("{name}'s history is not its runs, newest first"));
        }
    }

    if wrong.is_empty() {
        Ok(())
    } else {
        bail!("seeding is inconsistent:\n  {}", wrong.join("\n  "))
    }
}
