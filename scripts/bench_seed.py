"""The fleet the dashboard benchmark seeds: a small catalog repository, and
the nodes and reports a server would have stored for 10,000 nodes over two
weeks, written straight into its SQLite database.

Rows are what `server/src/db.rs` writes (`insert_report`, `record_served`,
`record_request`), report bodies what the agent posts (`catalog/src/report.rs`),
and `report_hours` is rebuilt by the migration's own statement.
"""

import collections
import hashlib
import json
import os
import random
import sqlite3
import statistics
import sys
import time
import uuid

HOUR_US = 3_600_000_000
DAY_US = 24 * HOUR_US
# The server's default `unresponsive_after_secs`, so a node's state is what the
# dashboard will compute.
UNRESPONSIVE_US = 5400 * 1_000_000
AGENT_VERSION = "0.1.0"

OS = {
    "debian": ("12", "bookworm", "Debian GNU/Linux", "Debian GNU/Linux 12 (bookworm)", None),
    "ubuntu": ("24.04", "noble", "Ubuntu", "Ubuntu 24.04.1 LTS", "debian"),
    "rocky": ("9.4", "blue onyx", "Rocky Linux", "Rocky Linux 9.4 (Blue Onyx)", "rhel centos fedora"),
}
KERNEL = {
    "debian": ("6.1.0-25-amd64", "#1 SMP PREEMPT_DYNAMIC Debian 6.1.106-3 (2024-08-26)"),
    "ubuntu": ("6.8.0-45-generic", "#45-Ubuntu SMP PREEMPT_DYNAMIC Fri Aug 30 12:02:04 UTC 2024"),
    "rocky": ("5.14.0-427.13.1.el9_4.x86_64", "#1 SMP PREEMPT_DYNAMIC Wed May 1 19:11:28 UTC 2024"),
}


def make_repo(repo):
    """Three roles; `debian` only for nodes whose os.id is debian, so the
    role and fact filters select part of the fleet."""
    os.makedirs(os.path.join(repo, "roles"))
    os.makedirs(os.path.join(repo, "templates"))
    files = {
        "nodes.toml": '[[node]]\nmatch = "*"\nroles = ["base"]\n\n'
        '[[node]]\nmatch = "web-*"\nroles = ["web"]\n\n'
        '[[node]]\nmatch = "*"\nfacts = { "os.id" = "debian" }\nroles = ["debian"]\n',
        "roles/base.toml": '[[directory]]\npath = "/etc/drover-bench"\nmode = "0755"\n\n'
        '[[file]]\npath = "/etc/motd"\ntemplate = "templates/motd.j2"\nmode = "0644"\n\n'
        '[[user]]\nname = "deploy"\n',
        "roles/web.toml": '[[package]]\nname = "nginx"\n\n'
        '[[file]]\npath = "/etc/nginx/conf.d/site.conf"\n'
        'content = "server { listen 80; server_name {{ node }}; root /srv/www; }\\n"\n'
        'mode = "0644"\nrequire = ["package:nginx"]\n\n'
        '[[service]]\nname = "nginx"\nsubscribe = ["file:/etc/nginx/conf.d/site.conf"]\n',
        "roles/debian.toml": '[[file]]\npath = "/etc/apt/apt.conf.d/99drover"\n'
        'content = "APT::Install-Recommends \\"false\\";\\n"\nmode = "0644"\n',
        "templates/motd.j2": "{{ node }} ({{ facts.os.id }}) is managed by drover.\n",
    }
    for name, text in files.items():
        with open(os.path.join(repo, name), "w") as f:
            f.write(text)


def roles_of(os_id):
    return ["base", "web", "debian"] if os_id == "debian" else ["base", "web"]


def facts_of(i, name, os_id, rng):
    """The agent's facts plus the DMI, disks and mountpoints a site's custom
    facts typically add: about 1.5 KB, like a real node's."""
    version_id, codename, os_name, pretty, id_like = OS[os_id]
    release, kversion = KERNEL[os_id]
    ip = f"10.{20 + i // 65536}.{(i // 256) % 256}.{i % 256}"
    mac = "".join(f"{rng.getrandbits(8):02x}" for _ in range(4))
    facts = {
        "agent_version": AGENT_VERSION,
        "architecture": "x86_64",
        "datacenter": ("fra1", "ams3", "lon2")[i % 3],
        "dmi": {
            "bios": {"vendor": "SeaBIOS", "version": "1.16.2-debian-1.16.2-1"},
            "manufacturer": "QEMU",
            "product": {
                "name": "Standard PC (Q35 + ICH9, 2009)",
                "uuid": str(uuid.UUID(int=rng.getrandbits(128))),
            },
        },
        "disks": {
            "vda": {"model": "Virtio Block Device", "size_bytes": 85899345920},
            "vdb": {"model": "Virtio Block Device", "size_bytes": 214748364800},
        },
        "fqdn": f"{name}.prod.example.net",
        "hostname": name,
        "kernel": {"name": "Linux", "release": release, "version": kversion},
        "memory": {"total_bytes": 8 * 2**30 * (1 + i % 4)},
        "mountpoints": {
            "/": {"device": "/dev/vda1", "filesystem": "ext4", "size_bytes": 84825604096},
            "/boot/efi": {"device": "/dev/vda15", "filesystem": "vfat", "size_bytes": 129718272},
            "/srv": {"device": "/dev/vdb1", "filesystem": "xfs", "size_bytes": 214643507200},
        },
        "networking": {
            "interfaces": {
                "docker0": {"ipv4": ["172.17.0.1"], "ipv6": []},
                "eth0": {"ipv4": [ip], "ipv6": [f"fe80::5054:ff:fe{mac[:2]}:{mac[2:]}"]},
                "eth1": {"ipv4": [f"192.168.{i % 256}.{i // 256 % 256}"], "ipv6": []},
                "lo": {"ipv4": ["127.0.0.1"], "ipv6": ["::1"]},
            },
            "ip": ip,
        },
        "os": {
            "codename": codename,
            "family": "linux",
            "id": os_id,
            "id_like": id_like,
            "name": os_name,
            "pretty_name": pretty,
            "version_id": version_id,
        },
        "processors": {"count": 2 * (1 + i % 4)},
        "timezone": "Etc/UTC",
    }
    # serde_json's Map is ordered by key, and compact.
    return json.dumps(facts, sort_keys=True, separators=(",", ":"))


def ts(ns):
    """RFC 3339 as jiff prints a Timestamp: UTC, trailing zeros trimmed."""
    secs, frac = divmod(ns, 1_000_000_000)
    text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs))
    frac = f"{frac:09d}".rstrip("0")
    return f"{text}.{frac}Z" if frac else f"{text}Z"


def hexid(rng, bits=256):
    return f"{rng.getrandbits(bits):0{bits // 4}x}"


Run = collections.namedtuple(
    "Run", "run_id status noop cached_catalog commit version duration_ms started_ns finished_ns"
)
# How long an unchanged resource of each kind takes to check (ms).
UNCHANGED_MS = {"package": (15, 60), "service": (3, 12), "file": (0.05, 0.4)}
# What the web role's resources require, as the engine reports a skip.
SKIPPED_AFTER = {
    "file:/etc/nginx/conf.d/site.conf": ("package:nginx", "failed"),
    "service:nginx": ("file:/etc/nginx/conf.d/site.conf", "was skipped"),
}


class Seeder:
    """Writes nodes and reports as the server would have stored them: each
    report's row as `db::insert_report` makes it, its body as the agent posts
    it, each node's `last_*` columns from its last report."""

    def __init__(self, rng, now_ns, head, variants):
        self.rng = rng
        self.variants = variants
        # Two older commits the fleet applied before the head (development
        # mode's `dir-` ids), and when the environment moved to each.
        self.commits = [f"dir-{hexid(rng, 64)}", f"dir-{hexid(rng, 64)}", head]
        now_us = now_ns // 1000
        self.moved_us = [0, now_us - 9 * DAY_US, now_us - 2 * DAY_US]
        self.statuses = {}
        self.body_bytes = 0

    def version(self, commit, name):
        # Well-formed like Catalog::compute_version (a sha256), not recomputed:
        # the dashboard only shows and compares it.
        return hashlib.sha256(f"{commit}:{name}".encode()).hexdigest()

    def commit_at(self, finish_us, pinned):
        if finish_us < self.moved_us[1]:
            return self.commits[0]
        if finish_us < self.moved_us[2] or pinned:
            return self.commits[1]
        return self.commits[2]

    def resources(self, ids, kind, noop, name, os_id):
        """The resource reports of one run: all unchanged, or one scenario of
        a change or of a failure."""
        rng = self.rng
        scenario = rng.random()
        broken = set()  # failed or skipped: their dependents are skipped
        out = []
        for rid in ids:
            r = {"id": rid, "status": "unchanged", "corrective": False}
            ms = UNCHANGED_MS.get(rid.split(":", 1)[0], (0.02, 0.3))
            if kind == "changed":
                ms = self.change(r, scenario, name, os_id) or ms
                if noop and r["status"] == "changed":
                    r["status"] = "noop"
            elif kind == "failed":
                ms = self.failure(r, scenario, broken) or ms
            r["duration_ms"] = 0.0 if r["status"] == "skipped" else rng.uniform(*ms)
            out.append(r)
        return out

    def change(self, r, scenario, name, os_id):
        """Half the changes repair a hand-edited motd, a third apply a new
        site config and refresh nginx, the rest fix a user's shell."""
        rng, rid = self.rng, r["id"]
        content = [{"property": "content", "previous": hexid(rng), "desired": hexid(rng)}]
        if scenario < 0.5 and rid == "file:/etc/motd":
            r.update(status="changed", corrective=True, events=content, diff=(
                "--- /etc/motd\n+++ /etc/motd\n@@ -1 +1 @@\n-maintenance tonight, do not reboot\n"
                f"+{name} ({os_id}) is managed by drover.\n"))
        elif 0.5 <= scenario < 0.85 and rid == "file:/etc/nginx/conf.d/site.conf":
            r.update(status="changed", events=content, diff=(
                "--- /etc/nginx/conf.d/site.conf\n+++ /etc/nginx/conf.d/site.conf\n"
                "@@ -1 +1 @@\n-server { listen 80; root /srv/www; }\n"
                f"+server {{ listen 80; server_name {name}; root /srv/www; }}\n"))
        elif 0.5 <= scenario < 0.85 and rid == "service:nginx":
            r.update(status="changed", refreshed=True, events=[
                {"property": "refresh", "previous": "running", "desired": "restarted"}])
            return (200, 900)
        elif scenario >= 0.85 and rid == "user:deploy":
            r.update(status="changed", corrective=True, events=[
                {"property": "shell", "previous": "/bin/sh", "desired": "/bin/bash"}])
        return None

    @staticmethod
    def failure(r, scenario, broken):
        """Most failures are a package that will not install (its dependents
        skipped, as the agent's engine does), the rest a read-only disk."""
        rid = r["id"]
        if scenario < 0.6 and rid == "package:nginx":
            r.update(status="failed", error="apt-get install -y nginx exited 100: E: Unable to "
                     "fetch some archives, maybe run apt-get update or try with --fix-missing?")
            broken.add(rid)
            return (2000, 9000)
        if scenario >= 0.6 and rid == "file:/etc/motd":
            r.update(status="failed",
                     error="cannot write /etc/motd: Read-only file system (os error 30)")
        elif rid in SKIPPED_AFTER and SKIPPED_AFTER[rid][0] in broken:
            dep, how = SKIPPED_AFTER[rid]
            r.update(status="skipped", error=f"skipped: dependency {dep} {how}")
            broken.add(rid)
        return None

    def report(self, name, os_id, node_noop, pinned, finish_us):
        """(row for `reports`, summary for the node's `last_*` columns)."""
        rng = self.rng
        noop = node_noop or rng.random() < 0.005
        cached = rng.random() < 0.01
        draw = rng.random()
        kind = "failed" if draw < 0.05 else "changed" if draw < 0.15 else "unchanged"
        ids = self.variants[os_id]["ids"]
        resources = self.resources(ids, kind, noop, name, os_id)
        counts = {s: 0 for s in ("unchanged", "changed", "failed", "skipped", "noop")}
        corrective = 0
        for r in resources:
            counts[r["status"]] += 1
            corrective += r["corrective"]
        # Report::summarize
        status = ("failed" if counts["failed"] or counts["skipped"]
                  else "changed" if counts["changed"] or counts["noop"] else "unchanged")
        span_s = {"unchanged": (0.6, 2.5), "changed": (1.5, 12.0), "failed": (1.0, 25.0)}[kind]
        finished_ns = finish_us * 1000 + rng.randrange(1000)
        started_ns = finished_ns - int(rng.uniform(*span_s) * 1e9)
        secs, nanos = divmod(finished_ns - started_ns, 1_000_000_000)
        duration_ms = max(0.0, (secs + nanos / 1e9) * 1000.0)  # db::run_duration_ms
        commit = self.commit_at(finish_us, pinned)
        version = self.version(commit, name)
        run_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        body = {
            "run_id": run_id, "node": name, "environment": "production", "commit": commit,
            "catalog_version": version, "noop": noop, "started_at": ts(started_ns),
            "finished_at": ts(finished_ns), "status": status,
            "cached_catalog": "on_failure" if cached else "not_used",
        }
        if cached:
            body["error"] = ("cannot fetch the catalog: error sending request for url "
                             "(https://drover.prod.example.net:8140/api/v1/catalog/" + name +
                             "): connection refused (os error 111); applied the cached catalog")
        facts_ms = rng.uniform(8, 40)
        catalog_ms = rng.uniform(20, 250)
        body.update(agent_version=AGENT_VERSION, resources=resources, metrics={
            "duration_ms": duration_ms - rng.uniform(0.1, 1.0), "facts_ms": facts_ms,
            "catalog_ms": catalog_ms, "apply_ms": max(0.0, duration_ms - facts_ms - catalog_ms - 2),
            "resources": {"total": len(resources), **counts, "corrective": corrective},
        })
        self.statuses[status] = self.statuses.get(status, 0) + 1
        text = json.dumps(body, separators=(",", ":"))
        self.body_bytes += len(text)
        row = (
            run_id, name, "production", commit, status, noop, body["started_at"],
            body["finished_at"], finish_us, version, body["cached_catalog"], len(resources),
            counts["changed"] + counts["noop"], counts["failed"], counts["skipped"],
            ts(finished_ns + rng.randrange(2, 150) * 1_000_000),
            text, duration_ms,
        )
        return row, Run(run_id, status, noop, body["cached_catalog"], commit, version,
                        duration_ms, started_ns, finished_ns)


REPORT_COLUMNS = (
    "run_id, node, environment, commit_id, status, noop, started_at, finished_at, "
    "finished_at_us, catalog_version, cached_catalog, resources, changed, failed, skipped, "
    "received_at, body, duration_ms"
)
NODE_COLUMNS = (
    "name, environment, facts, roles, catalog_version, commit_id, last_status, "
    "last_run_at, last_run_at_us, last_seen_at, last_seen_at_us, last_run_id, last_noop, "
    "last_cached_catalog, last_commit, last_catalog_version, last_duration_ms"
)


def rollup_sql(top):
    """The migration's own statement that builds `report_hours` from `reports`."""
    with open(os.path.join(top, "server", "migrations", "0002_dashboard.sql")) as f:
        sql = f.read()
    start = sql.index("INSERT INTO report_hours")
    return sql[start:sql.index(";", start) + 1]


def seed(top, db_path, n_nodes, n_reports, head, variants, probe):
    """Seeds the database; returns what the page checks need to know."""
    assert n_reports >= n_nodes, "every node needs a last report"
    rng = random.Random(6)
    now_ns = time.time_ns()
    now_us = now_ns // 1000
    seeder = Seeder(rng, now_ns, head, variants)
    names = [f"web-{i:05d}" for i in range(1, n_nodes + 1)]
    os_ids = [rng.choices(("debian", "ubuntu", "rocky"), (6, 3, 1))[0] for _ in names]
    # 2% run in noop, 2% stay on an older commit (stale), 1% stopped
    # reporting hours or days ago (unresponsive); the rest last ran within
    # the agent's 30-minute interval.
    noop_nodes = set(rng.sample(range(n_nodes), n_nodes // 50))
    pinned = set(rng.sample(range(n_nodes), n_nodes // 50))
    gone = set(rng.sample(range(n_nodes), n_nodes // 100))
    # Every report's finish time, then all of them in time order: rows are
    # inserted as they would have arrived, so one node's reports lie apart
    # in the table, as in production. The retention window (14 days) keeps
    # them all.
    oldest_us = now_us - 13 * DAY_US - 12 * HOUR_US
    shift = n_nodes.bit_length()
    keys = []
    per, extra = divmod(n_reports, n_nodes)
    for i in range(n_nodes):
        k = per + (i < extra)
        ago = rng.uniform(2 * HOUR_US, 3 * DAY_US) if i in gone else rng.uniform(30e6, 1800e6)
        last = int(now_us - ago)
        step = (last - oldest_us) / k
        keys.append(last << shift | i)
        keys.extend(int(last - j * step - rng.uniform(0, step / 5)) << shift | i for j in range(1, k))
    keys.sort()
    mask = (1 << shift) - 1
    last = [None] * n_nodes
    last_fresh = [None] * n_nodes
    probe_runs = []
    probe_i = names.index(probe) if probe in names else -1

    def rows():
        for key in keys:
            i = key & mask
            row, summary = seeder.report(names[i], os_ids[i], i in noop_nodes, i in pinned, key >> shift)
            last[i] = summary
            if summary.cached_catalog == "not_used":
                last_fresh[i] = summary
            if i == probe_i:
                probe_runs.append(summary)
            yield row

    db = sqlite3.connect(db_path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=OFF")
    db.execute("PRAGMA cache_size=-262144")
    db.execute("BEGIN")
    db.executemany(f"INSERT INTO reports ({REPORT_COLUMNS}) VALUES ({', '.join('?' * 18)})", rows())
    node_rows, catalog_rows = [], []
    for i, name in enumerate(names):
        catalog = dict(variants[os_ids[i]]["catalog"])
        s, fresh = last[i], last_fresh[i] or last[i]
        # The last catalog served: the commit of the last run that fetched one.
        catalog.update(node=name, commit=fresh.commit, version=fresh.version)
        # The last catalog request, at the start of the last run that made one.
        seen_ns = fresh.started_ns + 200_000_000
        catalog_rows.append((name, json.dumps(catalog, separators=(",", ":"))))
        node_rows.append((
            name, "production", facts_of(i, name, os_ids[i], rng), json.dumps(roles_of(os_ids[i])),
            fresh.version, fresh.commit,
            s.status, ts(s.finished_ns), s.finished_ns // 1000, ts(seen_ns), seen_ns // 1000,
            s.run_id, s.noop, s.cached_catalog, s.commit, s.version, s.duration_ms,
        ))
    db.executemany(f"INSERT INTO nodes ({NODE_COLUMNS}) VALUES ({', '.join('?' * 17)})", node_rows)
    # The last good catalog has its own table (migration 0004).
    db.executemany("INSERT INTO catalogs (node, catalog) VALUES (?, ?)", catalog_rows)
    db.execute("DELETE FROM report_hours")
    db.execute(rollup_sql(top))
    db.execute("COMMIT")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    # The same relation the server keeps, checked rather than assumed.
    wrong = db.execute(
        "SELECT COUNT(*) FROM nodes WHERE last_run_id IS NOT (SELECT run_id FROM reports "
        "WHERE node = nodes.name ORDER BY finished_at_us DESC, id DESC LIMIT 1)"
    ).fetchone()[0]
    hours = db.execute("SELECT SUM(runs) FROM report_hours").fetchone()[0]
    db.close()
    if wrong or hours != n_reports:
        sys.exit(f"seeding is inconsistent: {wrong} nodes' last_run_id is not their last report, "
                 f"report_hours counts {hours} of {n_reports} reports")
    # The state the dashboard will compute (fleet.rs), from the last report.
    state_of = [
        "unresponsive" if s.finished_ns // 1000 < now_us - UNRESPONSIVE_US
        else "noop_pending" if s.status == "changed" and s.noop
        else s.status
        for s in last
    ]
    states = {st: state_of.count(st) for st in set(state_of)}
    return {
        "names": names,
        "os_ids": os_ids,
        # Newest first, as the server orders them (finish time, then id).
        "probe_runs": probe_runs[::-1],
        "statuses": seeder.statuses,
        "node_states": states,
        "state_of": state_of,
        "stale": sum(s.cached_catalog == "on_failure" or s.commit != head for s in last),
        "facts_bytes": statistics.mean(len(r[2]) for r in node_rows),
        "body_bytes": seeder.body_bytes / n_reports,
    }
