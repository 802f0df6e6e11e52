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
... see `drover-fleet --help`); figures go to bench-out/fleet.json.
"""

import os
import subprocess
import sys


def run(top, release, argv):
    build = "--no-build" not in argv
    argv = [a for a in argv if a != "--no-build"]
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
        argv += ["--out", os.path.join(top, "bench-out", "fleet.json")]
    code = subprocess.run([fleet, *argv]).returncode
    if code != 0:
        sys.exit(f"drover-fleet exited {code}")
