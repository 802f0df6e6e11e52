//! The state a replica with a probe reports, and since when. A report's
//! state is its probe at report time ([`Prober::confirm`]: healthy when
//! one of a few tries passes), and `since` the first report that saw the
//! same verdict of the same container start. The engine keeps no record of
//! our probes, so these are kept in `STATE/probes.json` (one entry per
//! replica the catalog holds: its container id, start, verdict and since),
//! written only when one changes.
//!
//! A verdict is sampled once a run: a replica that flapped between two
//! runs and came back keeps its since, and one first seen healthy (after
//! a start, or with no record) is healthy since that report, never
//! earlier than it really was, as `replicas.rs` does for the engine's own
//! healthcheck. A restart or a recreate starts afresh. A record that
//! cannot be read is a warning and starts afresh too: it only dates states.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bollard::models::ContainerInspectResponse;
use drover_catalog::model::HttpProbe;
use drover_catalog::report::ReplicaState;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::probe::{Prober, Verdict};

/// The file's name in the agent's state directory.
pub(crate) const FILE_NAME: &str = "probes.json";

/// What the last reports said of each replica with a probe, by container name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Verdicts {
    containers: BTreeMap<String, Record>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Record {
    /// The engine's container id and start time: another container, or
    /// the same one started again, starts a new record.
    id: String,
    started_at: String,
    healthy: bool,
    since: Timestamp,
}

impl Verdicts {
    /// Records that a probe at `now` found container `name` (engine id
    /// `id`, started at `started_at`) healthy or not, and gives since when.
    pub(super) fn observe(
        &mut self,
        name: &str,
        id: &str,
        started_at: &str,
        healthy: bool,
        now: Timestamp,
    ) -> Timestamp {
        let same = |r: &Record| r.id == id && r.started_at == started_at && r.healthy == healthy;
        match self.containers.get(name).filter(|r| same(r)) {
            Some(record) => record.since,
            None => {
                let record = Record {
                    id: id.to_owned(),
                    started_at: started_at.to_owned(),
                    healthy,
                    since: now,
                };
                self.containers.insert(name.to_owned(), record);
                now
            }
        }
    }
}

/// One report's probes: the client, the records as read, and as updated.
pub(super) struct Probing {
    path: Option<PathBuf>,
    prober: Option<Result<Prober, String>>,
    read: Verdicts,
    now: Verdicts,
}

impl Probing {
    /// The records of `path` (`None`: keeps none, every since is its report's).
    pub(super) fn load(path: Option<&Path>) -> Probing {
        let read = path.map_or_else(Verdicts::default, read);
        Probing {
            path: path.map(Path::to_owned),
            prober: None,
            read,
            now: Verdicts::default(),
        }
    }

    /// The state and since of container `c` (its catalog `name`) with
    /// `probe`; `None` when it is not running (the engine's state then).
    pub(super) fn state(
        &mut self,
        name: &str,
        c: &ContainerInspectResponse,
        probe: &HttpProbe,
    ) -> Option<(ReplicaState, Option<Timestamp>)> {
        let state = c.state.as_ref()?;
        if state.running != Some(true) || state.restarting == Some(true) {
            return None;
        }
        let healthy = self.probe(c, probe).passed();
        // Carried over from what was read, so a replica the catalog no
        // longer holds drops out of the file.
        if let Some(record) = self.read.containers.get(name) {
            self.now.containers.insert(name.to_owned(), record.clone());
        }
        let since = self.now.observe(
            name,
            c.id.as_deref().unwrap_or_default(),
            state.started_at.as_deref().unwrap_or_default(),
            healthy,
            Timestamp::now(),
        );
        let state = match healthy {
            true => ReplicaState::Healthy,
            false => ReplicaState::Unhealthy,
        };
        Some((state, Some(since)))
    }

    fn probe(&mut self, c: &ContainerInspectResponse, probe: &HttpProbe) -> Verdict {
        let prober = self
            .prober
            .get_or_insert_with(|| Prober::new().map_err(|e| format!("{e:#}")));
        match prober {
            Ok(prober) => prober.confirm(c, probe),
            Err(why) => Verdict {
                probe: format!("GET {} on port {}", probe.path, probe.port),
                outcome: super::probe::Outcome::Failed(why.clone()),
            },
        }
    }

    /// Writes the records when they changed.
    pub(super) fn save(self) {
        let Some(path) = self.path.filter(|_| self.now != self.read) else {
            return;
        };
        let json = serde_json::to_vec_pretty(&self.now).expect("verdicts serialize");
        if let Err(e) = crate::fsutil::write_state_file(&path, &json) {
            crate::output::warning(&format!("the probes' verdicts were not kept: {e:#}"));
        }
    }
}

fn read(path: &Path) -> Verdicts {
    match fs_err::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            crate::output::warning(&format!(
                "{} does not parse ({e}); replicas' health is dated afresh",
                path.display()
            ));
            Verdicts::default()
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Verdicts::default(),
        Err(e) => {
            crate::output::warning(&format!("{e}; replicas' health is dated afresh"));
            Verdicts::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use bollard::models::ContainerState;

    use super::*;

    fn at(minute: i64) -> Timestamp {
        Timestamp::from_second(1_750_000_000 + minute * 60).unwrap()
    }

    #[test]
    fn the_same_verdict_of_the_same_start_keeps_its_since() {
        let mut kept = Verdicts::default();
        assert_eq!(kept.observe("web-0-a", "c1", "10:00", true, at(1)), at(1));
        assert_eq!(kept.observe("web-0-a", "c1", "10:00", true, at(2)), at(1));
        // Turned unhealthy: since that report, and kept while it lasts.
        assert_eq!(kept.observe("web-0-a", "c1", "10:00", false, at(3)), at(3));
        assert_eq!(kept.observe("web-0-a", "c1", "10:00", false, at(4)), at(3));
        assert_eq!(kept.observe("web-0-a", "c1", "10:00", true, at(5)), at(5));
        // Restarted, or recreated under the same name: afresh.
        assert_eq!(kept.observe("web-0-a", "c1", "10:06", true, at(7)), at(7));
        assert_eq!(kept.observe("web-0-a", "c2", "10:08", true, at(9)), at(9));
        // Each replica its own.
        assert_eq!(kept.observe("web-1-b", "c3", "10:00", true, at(10)), at(10));
        assert_eq!(kept.observe("web-0-a", "c2", "10:08", true, at(11)), at(9));
    }

    fn running(id: &str) -> ContainerInspectResponse {
        ContainerInspectResponse {
            id: Some(id.into()),
            state: Some(ContainerState {
                running: Some(true),
                started_at: Some("2025-01-01T10:00:00Z".into()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn the_records_survive_runs_and_drop_replicas_no_longer_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        // No address to probe (no network): unhealthy, at once, no I/O.
        let probe = HttpProbe {
            path: "/healthz".into(),
            port: 80,
            interval_secs: 1,
            timeout_secs: 1,
        };
        let mut first = Probing::load(Some(&path));
        let (state, since) = first.state("web-0-a", &running("c1"), &probe).unwrap();
        assert_eq!(state, ReplicaState::Unhealthy);
        first.state("web-1-b", &running("c2"), &probe).unwrap();
        first.save();
        assert!(path.exists());

        let mut second = Probing::load(Some(&path));
        let again = second.state("web-0-a", &running("c1"), &probe).unwrap();
        assert_eq!(again, (ReplicaState::Unhealthy, since));
        second.save();
        let kept = read(&path);
        assert_eq!(
            kept.containers.keys().collect::<Vec<_>>(),
            ["web-0-a"],
            "web-1-b was not reported: its record goes"
        );

        // Not running: the engine's state, nothing probed or recorded.
        let mut stopped = running("c1");
        stopped.state.as_mut().unwrap().running = Some(false);
        assert_eq!(Probing::load(None).state("web-0-a", &stopped, &probe), None);
    }

    #[test]
    fn a_record_that_does_not_parse_starts_afresh() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        fs_err::write(&path, "not json").unwrap();
        assert_eq!(read(&path), Verdicts::default());
    }
}
