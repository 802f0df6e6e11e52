"""scripts/bench fleet: the fleet simulator against a real server.

Builds the release binaries (unless --no-build) and runs
target/release/drover-fleet, which starts target/release/drover-server on
127.0.0.1:0 for each scenario and drives thousands of simulated agents
from one process: 10,000 nodes checking in spread over 60 s, 2,000 nodes
at the same instant (load shedding with 503 + Retry-After, agents backing
off with jitter), and compile throughput of a 500-resource catalog with
and without the compile cache, and push to converged: 1,000 nodes holding
the catalog watch while a commit to the site's git repository and the git
webhook move every node's catalog, each timed to its watch answering and
to its report of the new version (target: all within 5 s). Every other
argument goes to drover-fleet (`--nodes`, `--spread-secs`, `--burst`,
`--watchers`, `--watch-deadline-secs`, `--scenario`, `--insecure-http`,
`--keep-dirs`, ... see `drover-fleet --help`); figures go to
bench-out/fleet.json.

Several servers on PostgreSQL (issue 19): `--postgres` starts a throwaway
PostgreSQL cluster (scripts/postgres, in a new directory under /tmp),
creates a database `bench` in it and runs the spread scenario (the default
scenario then) with every server on that database; `--servers N` (default
1, more than 1 needs --postgres) starts N servers on it, the first before
the others (it creates the CA and stores it), each with its own data
directory and loopback port and one cluster secret file, and node i
enrolls and checks in through server i mod N (`--enroll-on-first-server`:
every node enrolls through the first server, then checks in through its
own; see docs/benchmarks.md for why). drover-fleet prints each server's
table and the combined one, and the CPU time of the servers and of
PostgreSQL over the rounds. The cluster is stopped and removed at
the end, also on failure; its log is copied to bench-out/fleet-postgres.log
first. Figures go to bench-out/fleet-postgres.json unless --out says.
"""

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile


def take(argv, flag, has_value):
    """Removes `flag` (and its value) from argv; returns the value, True
    for a flag without one, or None when absent."""
    found = None
    rest = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == flag:
            if has_value:
                if i + 1 >= len(argv):
                    sys.exit(f"scripts/bench fleet: {flag} needs a value")
                found = argv[i + 1]
                i += 2
                continue
            found = True
        elif has_value and a.startswith(flag + "="):
            found = a[len(flag) + 1:]
        else:
            rest.append(a)
        i += 1
    argv[:] = rest
    return found


def run(top, release, argv):
    argv = list(argv)
    build = not take(argv, "--no-build", False)
    postgres = bool(take(argv, "--postgres", False))
    servers = take(argv, "--servers", True)
    try:
        servers = int(servers) if servers is not None else 1
    except ValueError:
        sys.exit(f"scripts/bench fleet: --servers must be a number, not `{servers}`")
    if servers < 1:
        sys.exit("scripts/bench fleet: --servers must be at least 1")
    if servers > 1 and not postgres:
        sys.exit("scripts/bench fleet: several servers share one PostgreSQL database: add --postgres")
    if postgres and any(a == "--database" or a.startswith("--database=") for a in argv):
        sys.exit("scripts/bench fleet: --postgres makes its own database; leave out --database")
    if build:
        print("building release binaries ...", file=sys.stderr, flush=True)
        subprocess.run(
            ["cargo", "build", "--release", "--quiet", "-p", "drover-server", "--bin", "drover-server",
             "-p", "drover-tests", "--bin", "drover-fleet"],
            cwd=top,
            check=True,
        )
    fleet = os.path.join(release, "drover-fleet")
    if not any(a == "--out" or a.startswith("--out=") for a in argv):
        name = "fleet-postgres.json" if postgres else "fleet.json"
        argv += ["--out", os.path.join(top, "bench-out", name)]
    if not postgres:
        code = subprocess.run([fleet, *argv]).returncode
        if code != 0:
            sys.exit(f"drover-fleet exited {code}")
        return
    if not any(a == "--scenario" or a.startswith("--scenario=") for a in argv):
        argv += ["--scenario", "spread"]
    argv += ["--servers", str(servers)]
    code = with_postgres(
        top, lambda url, pid: run_group([fleet, *argv, "--database", url, "--database-pid", pid]))
    if code != 0:
        sys.exit(f"drover-fleet exited {code}")


def run_group(argv):
    """Runs argv in a process group of its own, which it shares with the
    servers it starts; returns its exit code. Whatever of the group is
    left when it ends or this script is interrupted (a server of a killed
    drover-fleet) is terminated, so nothing holds the database when the
    cluster stops."""
    proc = subprocess.Popen(argv, start_new_session=True)
    try:
        return proc.wait()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait()


def with_postgres(top, body):
    """Runs body(URL of a new database `bench`, the postmaster's pid) with
    a throwaway PostgreSQL cluster; stops and removes the cluster afterwards, also on failure or
    SIGTERM, keeping its log in bench-out/fleet-postgres.log."""
    script = os.path.join(top, "scripts", "postgres")
    # Short: the unix socket's path must fit in 107 bytes. Owned by the
    # cluster's user once started (scripts/postgres chowns it).
    cluster = tempfile.mkdtemp(prefix="drover-pg-", dir="/tmp")
    os.chmod(cluster, 0o755)

    def terminated(signum, _frame):
        raise SystemExit(f"scripts/bench fleet: signal {signum}")

    previous = signal.signal(signal.SIGTERM, terminated)
    try:
        print(f"starting PostgreSQL in {cluster} ...", file=sys.stderr, flush=True)
        admin = subprocess.run([script, "start", cluster], stdout=subprocess.PIPE, text=True,
                               check=True).stdout.strip()
        subprocess.run(["psql", "-q", "-X", admin, "-c", "CREATE DATABASE bench"], check=True)
        path, sep, query = admin.partition("?")
        url = path.rsplit("/", 1)[0] + "/bench" + sep + query
        settings = subprocess.run(
            ["psql", "-X", "-A", "-t", "-F", " ", url, "-c",
             "SELECT current_setting('server_version'), current_setting('fsync'),"
             " current_setting('synchronous_commit')"],
            stdout=subprocess.PIPE, text=True, check=True).stdout.strip()
        with open(os.path.join(cluster, "data", "postmaster.pid")) as f:
            pid = f.readline().strip()
        print(f"PostgreSQL (server_version, fsync, synchronous_commit): {settings};"
              f" on its unix socket, database {url}", flush=True)
        return body(url, pid)
    finally:
        log = os.path.join(cluster, "log")
        if os.path.exists(log):
            os.makedirs(os.path.join(top, "bench-out"), exist_ok=True)
            shutil.copyfile(log, os.path.join(top, "bench-out", "fleet-postgres.log"))
        stopped = subprocess.run([script, "stop", cluster]).returncode
        signal.signal(signal.SIGTERM, previous)
        if stopped != 0:
            print(f"scripts/bench fleet: `scripts/postgres stop {cluster}` failed", file=sys.stderr)
