//! Updates round by round, through the control loop's pure round
//! (`control::environment_round`) on a fleet the test reports for: canary
//! first then `max_parallel`, a failure without and with `auto_revert`,
//! and the in-place update of a full fleet bounded by `min_available`.

use std::collections::HashMap;
use std::sync::Arc;

use drover_catalog::{RepoFiles, Repository};

use crate::apps::control::{World, environment_round};
use crate::apps::placements::container_name;
use crate::db::apps::{FleetNode, PlacementRow, ReplicaStateRow};
use crate::db::updates::{DONE, FAILED, REVERTED, ROLLING};
use crate::snapshot::EnvSnapshot;

const SEC: i64 = 1_000_000;

/// One environment of `nodes` nodes and the app `web`, rounds run by hand.
struct Sim {
    snap: EnvSnapshot,
    members: Vec<FleetNode>,
    world: World,
}

fn files(app: &str, nodes: usize) -> RepoFiles {
    let mut files = RepoFiles::new();
    let mut nodes_toml = String::new();
    for n in 1..=nodes {
        nodes_toml.push_str(&format!(
            "[[node]]\nmatch = \"n{n}\"\nroles = [\"docker-host\"]\n"
        ));
    }
    files.insert("nodes.toml".into(), nodes_toml.into_bytes().into());
    files.insert("roles/docker-host.toml".into(), b"\n".to_vec().into());
    files.insert("apps/web.toml".into(), app.as_bytes().to_vec().into());
    files
}

fn app(version: &str, extra: &str) -> String {
    format!(
        "replicas = 3\nimage = \"web:{version}\"\n\
         update = {{ max_parallel = 2, canary = 1, min_healthy_secs = 5, healthy_deadline_secs = 60 }}\n{extra}"
    )
}

impl Sim {
    fn new(app: &str, nodes: usize) -> Sim {
        let facts = serde_json::json!({
            "processors": { "count": 4 },
            "memory": { "total_bytes": 8u64 << 30 },
        });
        let members = (1..=nodes)
            .map(|n| FleetNode {
                name: format!("n{n}"),
                environment: Some("main".into()),
                facts: facts.as_object().unwrap().clone(),
                cordoned: false,
                last_status: Some("unchanged".into()),
                seen_at_us: 0,
            })
            .collect();
        let mut sim = Sim {
            snap: snapshot(app, nodes, "c1"),
            members,
            world: World {
                now_us: 1_000_000 * SEC,
                ..World::default()
            },
        };
        sim.world.leading_since_us = sim.world.now_us;
        sim
    }

    /// A new commit of the app file.
    fn commit(&mut self, app: &str, commit: &str) {
        let nodes = self.members.len();
        self.snap = snapshot(app, nodes, commit);
    }

    /// One round, its writes applied as the database would; `secs` pass first.
    fn round(&mut self, secs: i64) -> crate::apps::control::Writes {
        self.world.now_us += secs * SEC;
        for m in &mut self.members {
            m.seen_at_us = self.world.now_us;
        }
        let repo = self.snap.repo.clone().unwrap();
        let members: Vec<&FleetNode> = self.members.iter().collect();
        let mut progress = Vec::new();
        let writes = environment_round(
            &self.snap,
            &repo,
            &self.world,
            &members,
            &HashMap::new(),
            &mut progress,
        )
        .unwrap();
        for s in &writes.specs {
            let key = (s.app.clone(), s.spec_hash.clone());
            self.world.stored.insert(key.clone());
            self.world.bodies.insert(key, s.body.as_str().into());
        }
        if let Some(changes) = &writes.placements {
            let rows = &mut self.world.rows;
            rows.retain(|r| !changes.delete.contains(&(r.app.clone(), r.replica)));
            for row in &changes.upsert {
                rows.retain(|r| (&r.app, r.replica) != (&row.app, row.replica));
                rows.push(row.clone());
            }
            rows.sort_by_key(|r| r.replica);
        }
        for u in &writes.updates {
            self.world
                .updates
                .insert((u.environment.clone(), u.app.clone()), u.clone());
        }
        writes
    }

    /// Every container of every row reported `state` since `ago` seconds.
    fn report_all(&mut self, state: &str, ago: i64) {
        let since = jiff::Timestamp::from_microsecond(self.world.now_us - ago * SEC)
            .unwrap()
            .to_string();
        let mut states = HashMap::new();
        for row in &self.world.rows {
            let running = [(row.node.clone(), row.placement_id.clone())]
                .into_iter()
                .chain(
                    row.next
                        .iter()
                        .map(|n| (Some(n.node.clone()), Some(n.placement_id.clone()))),
                );
            for (node, id) in running {
                let (Some(node), Some(id)) = (node, id) else {
                    continue;
                };
                let container = container_name(&row.app, row.replica, &id);
                states.insert(
                    (node.clone(), container.clone()),
                    ReplicaStateRow {
                        node,
                        container,
                        state: state.to_owned(),
                        since: Some(since.clone()),
                        reported_at: since.clone(),
                    },
                );
            }
        }
        self.world.states = states;
    }

    /// A replacement's container reported `state`.
    fn report_next(&mut self, replica: u32, state: &str) {
        let row = self.row(replica).clone();
        let next = row.next.unwrap();
        let container = container_name("web", replica, &next.placement_id);
        self.world.states.insert(
            (next.node.clone(), container.clone()),
            ReplicaStateRow {
                node: next.node,
                container,
                state: state.to_owned(),
                since: None,
                reported_at: String::new(),
            },
        );
    }

    fn row(&self, replica: u32) -> &PlacementRow {
        self.world
            .rows
            .iter()
            .find(|r| r.replica == replica)
            .unwrap()
    }

    fn moving(&self) -> Vec<u32> {
        self.world
            .rows
            .iter()
            .filter(|r| r.next.is_some())
            .map(|r| r.replica)
            .collect()
    }

    fn update(&self) -> crate::db::updates::AppUpdate {
        self.world.updates[&("main".to_owned(), "web".to_owned())].clone()
    }

    fn spec(&self) -> String {
        let repo = self.snap.repo.clone().unwrap();
        let (_, app) = repo.apps().next().unwrap();
        app.unwrap().demand.spec_hash.clone()
    }

    /// Places v1 and reports it healthy: the update is done.
    fn settled(&mut self) {
        self.round(0);
        self.report_all("running", 100);
        self.round(1);
        assert_eq!(self.update().state, DONE);
    }
}

fn snapshot(app: &str, nodes: usize, commit: &str) -> EnvSnapshot {
    EnvSnapshot {
        name: "main".into(),
        commit: commit.into(),
        repo: Ok(Arc::new(Repository::parse(files(app, nodes)).unwrap())),
        notes: Vec::new(),
        loaded_at: jiff::Timestamp::now(),
        info: None,
    }
}

#[test]
fn a_canary_goes_alone_then_max_parallel_at_a_time_each_beside_its_old_replica() {
    let mut sim = Sim::new(&app("1", ""), 6);
    sim.settled();
    let v1 = sim.spec();
    let before: Vec<String> = sim
        .world
        .rows
        .iter()
        .map(|r| r.node.clone().unwrap())
        .collect();

    sim.commit(&app("2", ""), "c2");
    let v2 = sim.spec();
    sim.round(1);
    assert_eq!(sim.update().state, ROLLING);
    assert_eq!(sim.moving(), [0], "the canary goes alone");
    let next = sim.row(0).next.clone().unwrap();
    assert_eq!(
        (sim.row(0).spec_hash.as_str(), next.spec_hash.as_str()),
        (v1.as_str(), v2.as_str())
    );
    assert!(
        !before.contains(&next.node),
        "beside the old ones: {}",
        next.node
    );
    // nothing more until it has been healthy for min_healthy_secs
    sim.round(1);
    assert_eq!(sim.moving(), [0]);
    assert!(sim.update().reason.unwrap().contains("to become healthy"));
    sim.report_all("running", 2);
    sim.round(1);
    assert_eq!(sim.moving(), [0], "healthy for 3 s of 5");
    sim.round(2);
    assert_eq!(sim.moving(), Vec::<u32>::new(), "swapped after 5 s");
    assert_eq!(sim.row(0).spec_hash, v2);
    assert_eq!(sim.row(0).node.as_ref(), Some(&next.node));
    // then max_parallel 2 at once
    sim.round(1);
    assert_eq!(sim.moving(), [1, 2]);
    sim.report_all("running", 100);
    sim.round(1);
    sim.round(1);
    let update = sim.update();
    assert_eq!(
        (update.state.as_str(), update.stable_spec_hash.as_deref()),
        (DONE, Some(v2.as_str()))
    );
    assert!(
        sim.world
            .rows
            .iter()
            .all(|r| r.spec_hash == v2 && r.next.is_none())
    );
    // the first spec's body was stored, so its replicas could run from it
    assert!(sim.world.bodies.contains_key(&("web".to_owned(), v1)));
}

#[test]
fn a_replacement_not_healthy_in_time_fails_the_update_and_what_runs_stays() {
    let mut sim = Sim::new(&app("1", ""), 6);
    sim.settled();
    let v1 = sim.spec();
    sim.commit(&app("2", ""), "c2");
    sim.round(1);
    sim.report_next(0, "missing");
    sim.round(59);
    assert_eq!(sim.update().state, ROLLING, "within the deadline");
    sim.round(2);
    let update = sim.update();
    assert_eq!(update.state, FAILED);
    let reason = update.reason.unwrap();
    assert!(
        reason.contains("was not healthy within healthy_deadline_secs (60 s): it is missing"),
        "{reason}"
    );
    assert!(reason.contains("auto_revert is off"), "{reason}");
    sim.round(1);
    assert_eq!(
        sim.moving(),
        Vec::<u32>::new(),
        "the failing replacement goes"
    );
    sim.round(100);
    assert!(sim.moving().is_empty(), "nothing more is replaced");
    assert!(sim.world.rows.iter().all(|r| r.spec_hash == v1));
    // a new commit starts a new update
    sim.commit(&app("3", ""), "c3");
    sim.round(1);
    assert_eq!(sim.update().state, ROLLING);
    assert_eq!(sim.moving(), [0]);
}

#[test]
fn with_auto_revert_a_failed_update_goes_back_to_the_stable_spec() {
    let file = |v: &str| {
        app(v, "").replace(
            "healthy_deadline_secs = 60",
            "healthy_deadline_secs = 60, auto_revert = true",
        )
    };
    let mut sim = Sim::new(&file("1"), 6);
    sim.settled();
    let v1 = sim.spec();
    sim.commit(&file("2"), "c2");
    // the canary passes, then the next two never become healthy
    sim.round(1);
    sim.report_all("running", 100);
    sim.round(1);
    sim.round(1);
    assert_eq!(sim.moving(), [1, 2]);
    let v2 = sim.row(0).spec_hash.clone();
    assert_ne!(v1, v2);
    sim.report_next(1, "exited");
    sim.report_next(2, "exited");
    sim.round(61);
    let update = sim.update();
    assert_eq!(update.state, REVERTED);
    assert!(
        update
            .reason
            .unwrap()
            .contains(&format!("reverted to spec {}", &v1[..8]))
    );
    // the failing replacements go; the canary of v2 is replaced by one of v1
    sim.round(1);
    sim.round(1);
    let canary = sim.row(0);
    assert_eq!(canary.spec_hash, v2);
    assert_eq!(
        canary.next.as_ref().map(|n| n.spec_hash.as_str()),
        Some(v1.as_str())
    );
    assert!(sim.row(1).next.is_none() && sim.row(1).spec_hash == v1);
    sim.report_all("running", 100);
    sim.round(1);
    sim.round(1);
    assert!(
        sim.world
            .rows
            .iter()
            .all(|r| r.spec_hash == v1 && r.next.is_none())
    );
    assert_eq!(
        sim.update().state,
        REVERTED,
        "it says so until the spec changes"
    );
}

#[test]
fn a_full_fleet_updates_in_place_only_while_min_available_holds() {
    let file = |v: &str, min: u32| {
        format!(
            "replicas = 2\nimage = \"web:{v}\"\nports = [\"8080:80\"]\n\
             disruption = {{ min_available = {min} }}\nupdate = {{ min_healthy_secs = 5 }}\n"
        )
    };
    // two nodes, two replicas, one host port: no room beside either
    let mut sim = Sim::new(&file("1", 2), 2);
    sim.settled();
    sim.commit(&file("2", 2), "c2");
    sim.round(1);
    assert!(sim.moving().is_empty());
    let said = sim.update().reason.unwrap();
    assert!(
        said.contains("would break min_available 2 (2 healthy)"),
        "{said}"
    );
    // with min_available 1, one at a time in place
    let mut sim = Sim::new(&file("1", 1), 2);
    sim.settled();
    let old = sim.row(0).clone();
    sim.commit(&file("2", 1), "c2");
    let v2 = sim.spec();
    sim.round(1);
    let row = sim.row(0).clone();
    assert_eq!(
        (row.node.as_ref(), row.spec_hash.as_str()),
        (old.node.as_ref(), v2.as_str())
    );
    assert_ne!(row.placement_id, old.placement_id, "a new container");
    assert!(
        sim.update()
            .reason
            .unwrap()
            .contains("updating web-0 in place")
    );
    sim.round(1);
    assert_ne!(sim.row(1).spec_hash, v2, "the second waits for the first");
    sim.report_all("running", 100);
    sim.round(1);
    assert_eq!(sim.row(1).spec_hash, v2);
    sim.report_all("running", 100);
    sim.round(1);
    assert_eq!(sim.update().state, DONE);
}

#[test]
fn an_app_with_no_node_to_run_on_rolls_without_failing() {
    // no nodes at all: replicas stay pending, the update rolls, nothing panics
    let mut sim = Sim::new(&app("1", ""), 0);
    sim.round(1);
    assert!(sim.world.rows.iter().all(|r| r.node.is_none()));
    assert_eq!(sim.update().state, ROLLING);
}

#[test]
fn replicas_scaled_down_mid_update_go_with_their_replacements() {
    let mut sim = Sim::new(&app("1", ""), 6);
    sim.settled();
    let v2 = app("2", "").replace("canary = 1", "canary = 0");
    sim.commit(&v2, "c2");
    sim.round(1);
    assert_eq!(sim.moving(), [0, 1]);
    sim.commit(&v2.replace("replicas = 3", "replicas = 1"), "c3");
    sim.round(1);
    let left: Vec<u32> = sim.world.rows.iter().map(|r| r.replica).collect();
    assert_eq!(left, [0], "replicas 1 and 2 removed, moving or not");
}
