"""scripts/bench diff: `drover-server diff` (impact analysis) at fleet scale.

Builds (unless --no-build) the release drover-server and drover-seed;
writes the dashboard benchmark's catalog repository (`drover-seed repo`) as
a git repository with a branch whose motd template changed (every node
renders it) and a branch that changes the `debian` role (the nodes whose
`os.id` is debian, about 60%), and the facts of N nodes (default 10,000; `drover-seed
facts`, about 1.5 KB each, as the seeded fleet has them); then times
`drover-server diff --env BRANCH --against main --facts-dir DIR` for each
branch (every node compiled twice, on every core), checking the exit code
and the number of nodes it says change. Figures go to bench-out/diff.json.

Target: 10,000 nodes in under a minute on this machine.
"""

import json
import os
import subprocess
import sys
import tempfile
import time


def git(repo, *args):
    subprocess.run(["git", "-C", repo, *args], check=True, capture_output=True,
                   env={**os.environ, "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@localhost",
                        "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@localhost"})


def run(top, release, argv):
    nodes = 10_000
    if "--nodes" in argv:
        nodes = int(argv[argv.index("--nodes") + 1])
    if "--no-build" not in argv:
        print("building the release drover-server and drover-seed ...", file=sys.stderr, flush=True)
        subprocess.run(["cargo", "build", "--release", "--quiet", "-p", "drover-server", "--bin",
                        "drover-server", "-p", "drover-tests", "--bin", "drover-seed"],
                       cwd=top, check=True)
    server = os.path.join(release, "drover-server")
    seed = os.path.join(release, "drover-seed")
    with tempfile.TemporaryDirectory(prefix="drover-bench-diff-") as work:
        repo = os.path.join(work, "site")
        subprocess.run([seed, "repo", repo], check=True)
        git(repo, "init", "-q", "-b", "main")
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", "the site")
        motd = os.path.join(repo, "templates", "motd.j2")
        git(repo, "checkout", "-q", "-b", "motd")
        with open(motd, "a") as f:
            f.write("changed by the benchmark's branch\n")
        git(repo, "commit", "-q", "-am", "every node's motd")
        git(repo, "checkout", "-q", "main")
        git(repo, "checkout", "-q", "-b", "debian")
        debian = os.path.join(repo, "roles", "debian.toml")
        with open(debian) as f:
            text = f.read()
        with open(debian, "w") as f:
            f.write(text.replace('mode = "0644"', 'mode = "0640"'))
        git(repo, "commit", "-q", "-am", "the debian nodes' apt setting")
        git(repo, "checkout", "-q", "main")
        facts = os.path.join(work, "facts")
        subprocess.run([seed, "facts", "--dir", facts, "--nodes", str(nodes)], check=True)
        results = []
        for branch in ("motd", "debian"):
            started = time.monotonic()
            proc = subprocess.run([server, "diff", "--repo", repo, "--env", branch, "--against", "main",
                                   "--facts-dir", facts], capture_output=True, text=True)
            took = time.monotonic() - started
            last = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr
            if proc.returncode != 2:
                sys.exit(f"diff of {branch} exited {proc.returncode}: {last}\n{proc.stderr[-2000:]}")
            changed = int(last.split(" of ")[0])
            results.append({"branch": branch, "nodes": nodes, "changed": changed,
                            "seconds": round(took, 2), "nodes_per_second": round(nodes / took)})
            print(f"diff {branch}: {nodes} nodes compiled twice in {took:.1f} s "
                  f"({nodes / took:,.0f} nodes/s), {changed} change: {last}")
    verdict = all(r["seconds"] < 60 for r in results)
    print(f"target: under 60 s for {nodes} nodes: {'met' if verdict else 'NOT MET'}")
    os.makedirs(os.path.join(top, "bench-out"), exist_ok=True)
    with open(os.path.join(top, "bench-out", "diff.json"), "w") as f:
        json.dump({"nodes": nodes, "runs": results, "cores": os.cpu_count()}, f, indent=2)
