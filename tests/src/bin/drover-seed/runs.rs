//! One run of one node, as the agent reports it: the resource statuses of
//! an unchanged run, of a change (a repaired motd, a new site config that
//! restarts nginx, a user's shell) or of a failure (a package that will not
//! install and its dependents skipped, or a read-only disk), with the
//! timings and metrics the agent measures. The report is a
//! [`drover_catalog::Report`], serialized as the agent posts it.

use std::collections::BTreeMap;

use drover_catalog::report::{
    CachedCatalog, Event, FileChecks, ResourceCounts, ResourceStatus, RunMetrics, RunStatus,
};
use drover_catalog::{Report, ResourceId, ResourceReport, sha256_hex};
use jiff::{SignedDuration, Timestamp};

use crate::facts::{AGENT_VERSION, Os};
use crate::rng::Rng;
use crate::site::ENVIRONMENT;

pub(crate) const HOUR_US: i64 = 3_600_000_000;
pub(crate) const DAY_US: i64 = 24 * HOUR_US;

/// How long an unchanged resource of each kind takes to check (ms).
fn unchanged_ms(id: &ResourceId) -> (f64, f64) {
    match id.kind().as_str() {
        "package" => (15.0, 60.0),
        "service" => (3.0, 12.0),
        "file" => (0.05, 0.4),
        _ => (0.02, 0.3),
    }
}

/// What the web role's resources require, as the engine reports a skip.
fn skipped_after(id: &str) -> Option<(&'static str, &'static str)> {
    match id {
        "file:/etc/nginx/conf.d/site.conf" => Some(("package:nginx", "failed")),
        "service:nginx" => Some(("file:/etc/nginx/conf.d/site.conf", "was skipped")),
        _ => None,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Unchanged,
    Changed,
    Failed,
}

/// The node a run is of, as the fleet plan made it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Node<'a> {
    pub(crate) name: &'a str,
    pub(crate) os: Os,
    /// Its catalog's resource ids, in order.
    pub(crate) ids: &'a [ResourceId],
    /// It runs in noop.
    pub(crate) noop: bool,
    /// It stays on the commit before the head.
    pub(crate) pinned: bool,
}

/// What the seeder keeps of a run: the node's `last_*` columns, the state
/// and page checks.
#[derive(Debug, Clone)]
pub(crate) struct Run {
    pub(crate) run_id: String,
    pub(crate) status: RunStatus,
    pub(crate) noop: bool,
    pub(crate) cached: bool,
    pub(crate) commit: String,
    pub(crate) version: String,
    pub(crate) started: Timestamp,
    pub(crate) finished: Timestamp,
}

/// Makes the fleet's runs; counts them by status as it goes.
pub(crate) struct Runs {
    /// Two older commits the fleet applied before the head (development
    /// mode's `dir-` ids), then the head.
    commits: [String; 3],
    /// When the environment moved to each commit (µs).
    moved_us: [i64; 3],
    pub(crate) statuses: BTreeMap<&'static str, u64>,
    pub(crate) body_bytes: u64,
    /// Resources not unchanged, over every report: the `report_events`
    /// rows the server's insert must write.
    pub(crate) events: u64,
}

impl Runs {
    pub(crate) fn new(rng: &mut Rng, now_us: i64, head: &str) -> Runs {
        let commits = [
            format!("dir-{}", rng.hex(64)),
            format!("dir-{}", rng.hex(64)),
            head.to_owned(),
        ];
        Runs {
            commits,
            moved_us: [0, now_us - 9 * DAY_US, now_us - 2 * DAY_US],
            statuses: BTreeMap::new(),
            body_bytes: 0,
            events: 0,
        }
    }

    /// Well-formed like `Catalog::compute_version` (a sha256), not
    /// recomputed: the dashboard only shows and compares it.
    pub(crate) fn version(commit: &str, node: &str) -> String {
        sha256_hex(format!("{commit}:{node}").as_bytes())
    }

    /// The commit a node applied at `finish_us`: a pinned node stays on the
    /// one before the head.
    fn commit_at(&self, finish_us: i64, pinned: bool) -> &str {
        if finish_us < self.moved_us[1] {
            &self.commits[0]
        } else if finish_us < self.moved_us[2] || pinned {
            &self.commits[1]
        } else {
            &self.commits[2]
        }
    }

    /// One report of `node`, finished at `finish_us`: the report, its
    /// body as the agent posts it, when the server received it, and what
    /// the seeder keeps of it.
    pub(crate) fn report(
        &mut self,
        rng: &mut Rng,
        node: &Node<'_>,
        finish_us: i64,
    ) -> (Report, String, Timestamp, Run) {
        let Node {
            name,
            os,
            ids,
            noop: node_noop,
            pinned,
        } = *node;
        let noop = node_noop || rng.chance(0.005);
        let cached = rng.chance(0.01);
        let draw = rng.unit();
        let kind = if draw < 0.05 {
            Kind::Failed
        } else if draw < 0.15 {
            Kind::Changed
        } else {
            Kind::Unchanged
        };
        let resources = resources(rng, ids, kind, noop, name, os);
        let counts = ResourceCounts::of(&resources);
        self.events += counts.total - counts.unchanged;
        let status = Report::summarize(&resources);
        let span_s = match kind {
            Kind::Unchanged => (0.6, 2.5),
            Kind::Changed => (1.5, 12.0),
            Kind::Failed => (1.0, 25.0),
        };
        let finished_ns = i128::from(finish_us) * 1000 + i128::from(rng.below(0, 1000));
        let started_ns = finished_ns - (rng.uniform(span_s) * 1e9) as i128;
        let finished = Timestamp::from_nanosecond(finished_ns).expect("a time of this century");
        let started = Timestamp::from_nanosecond(started_ns).expect("a time of this century");
        // As the server computes it (db::run_duration_ms).
        let duration_ms = (finished.duration_since(started).as_secs_f64() * 1000.0).max(0.0);
        let commit = self.commit_at(finish_us, pinned).to_owned();
        let version = Runs::version(&commit, name);
        let run_id = rng.uuid_v4();
        let error = cached.then(|| {
            format!(
                "cannot fetch the catalog: error sending request for url \
                 (https://drover.prod.example.net:8140/api/v1/catalog/{name}): connection \
                 refused (os error 111); applied the cached catalog"
            )
        });
        let (facts_ms, catalog_ms) = (rng.uniform((8.0, 40.0)), rng.uniform((20.0, 250.0)));
        let files = ids
            .iter()
            .filter(|id| id.as_str().starts_with("file:"))
            .count() as u64;
        let written = resources
            .iter()
            .filter(|r| r.id.as_str().starts_with("file:") && r.status != ResourceStatus::Unchanged)
            .count() as u64;
        let metrics = RunMetrics {
            duration_ms: duration_ms - rng.uniform((0.1, 1.0)),
            facts_ms,
            catalog_ms,
            apply_ms: (duration_ms - facts_ms - catalog_ms - 2.0).max(0.0),
            resources: counts,
            // The metadata cache vouches for the files it saw unchanged.
            files: FileChecks {
                hashed: written,
                trusted: files - written,
                full_verification: false,
            },
        };
        let report = Report {
            run_id: run_id.clone(),
            node: name.to_owned(),
            environment: ENVIRONMENT.to_owned(),
            commit: commit.clone(),
            catalog_version: version.clone(),
            noop,
            started_at: started,
            finished_at: finished,
            status,
            cached_catalog: if cached {
                CachedCatalog::OnFailure
            } else {
                CachedCatalog::NotUsed
            },
            error,
            catalog_error: None,
            server: None,
            agent_version: AGENT_VERSION.to_owned(),
            resources,
            replicas: Vec::new(),
            tags: Vec::new(),
            metrics,
        };
        // As the agent posts it.
        let body = serde_json::to_string(&report).expect("a report serializes");
        self.body_bytes += body.len() as u64;
        *self.statuses.entry(status.as_str()).or_default() += 1;
        let received = finished
            .checked_add(SignedDuration::from_millis(rng.below(2, 150) as i64))
            .expect("a time of this century");
        let run = Run {
            run_id,
            status,
            noop,
            cached,
            commit,
            version,
            started,
            finished,
        };
        (report, body, received, run)
    }
}

/// The resource reports of one run: all unchanged, or one scenario of a
/// change or of a failure.
fn resources(
    rng: &mut Rng,
    ids: &[ResourceId],
    kind: Kind,
    noop: bool,
    name: &str,
    os: Os,
) -> Vec<ResourceReport> {
    let scenario = rng.unit();
    // Failed or skipped: their dependents are skipped.
    let mut broken: Vec<String> = Vec::new();
    ids.iter()
        .map(|id| {
            let mut r = ResourceReport::new(id.clone(), ResourceStatus::Unchanged);
            let mut ms = unchanged_ms(id);
            match kind {
                Kind::Unchanged => {}
                Kind::Changed => {
                    if let Some(took) = change(rng, &mut r, scenario, name, os) {
                        ms = took;
                    }
                    if noop && r.status == ResourceStatus::Changed {
                        r.status = ResourceStatus::Noop;
                    }
                }
                Kind::Failed => {
                    if let Some(took) = failure(&mut r, scenario, &mut broken) {
                        ms = took;
                    }
                }
            }
            r.duration_ms = if r.status == ResourceStatus::Skipped {
                0.0
            } else {
                rng.uniform(ms)
            };
            r
        })
        .collect()
}

fn event(property: &str, previous: &str, desired: &str) -> Event {
    Event {
        property: property.to_owned(),
        previous: Some(previous.to_owned()),
        desired: Some(desired.to_owned()),
        message: None,
    }
}

/// Half the changes repair a hand-edited motd, a third apply a new site
/// config and refresh nginx, the rest fix a user's shell. Some(ms range)
/// when the resource takes longer than an unchanged one.
fn change(
    rng: &mut Rng,
    r: &mut ResourceReport,
    scenario: f64,
    name: &str,
    os: Os,
) -> Option<(f64, f64)> {
    let site = (0.5..0.85).contains(&scenario);
    match r.id.as_str() {
        "file:/etc/motd" if scenario < 0.5 => {
            r.status = ResourceStatus::Changed;
            r.corrective = true;
            r.events = vec![event("content", &rng.hex(256), &rng.hex(256))];
            r.diff = Some(format!(
                "--- /etc/motd\n+++ /etc/motd\n@@ -1 +1 @@\n-maintenance tonight, do not reboot\n\
                 +{name} ({}) is managed by drover.\n",
                os.id()
            ));
        }
        "file:/etc/nginx/conf.d/site.conf" if site => {
            r.status = ResourceStatus::Changed;
            r.events = vec![event("content", &rng.hex(256), &rng.hex(256))];
            r.diff = Some(format!(
                "--- /etc/nginx/conf.d/site.conf\n+++ /etc/nginx/conf.d/site.conf\n\
                 @@ -1 +1 @@\n-server {{ listen 80; root /srv/www; }}\n\
                 +server {{ listen 80; server_name {name}; root /srv/www; }}\n"
            ));
        }
        "service:nginx" if site => {
            r.status = ResourceStatus::Changed;
            r.refreshed = true;
            r.events = vec![event("refresh", "running", "restarted")];
            return Some((200.0, 900.0));
        }
        "user:deploy" if scenario >= 0.85 => {
            r.status = ResourceStatus::Changed;
            r.corrective = true;
            r.events = vec![event("shell", "/bin/sh", "/bin/bash")];
        }
        _ => {}
    }
    None
}

/// Most failures are a package that will not install (its dependents
/// skipped, as the agent's engine does), the rest a read-only disk.
fn failure(r: &mut ResourceReport, scenario: f64, broken: &mut Vec<String>) -> Option<(f64, f64)> {
    let id = r.id.as_str().to_owned();
    if scenario < 0.6 && id == "package:nginx" {
        r.status = ResourceStatus::Failed;
        r.error = Some(
            "apt-get install -y nginx exited 100: E: Unable to fetch some archives, maybe run \
             apt-get update or try with --fix-missing?"
                .to_owned(),
        );
        broken.push(id);
        return Some((2000.0, 9000.0));
    }
    if scenario >= 0.6 && id == "file:/etc/motd" {
        r.status = ResourceStatus::Failed;
        r.error = Some("cannot write /etc/motd: Read-only file system (os error 30)".to_owned());
    } else if let Some((dep, how)) = skipped_after(&id)
        && broken.iter().any(|b| b == dep)
    {
        r.status = ResourceStatus::Skipped;
        r.error = Some(format!("skipped: dependency {dep} {how}"));
        broken.push(id);
    }
    None
}
