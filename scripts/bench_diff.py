"""scripts/bench diff: `drover-server diff` (impact analysis) at fleet scale.

Builds (unless --no-build) the release drover-server and drover-seed;
writes the dashboard benchmark's catalog repository (`drover-seed repo`) as
a git repository with a branch whose motd template changed (every node
renders it) and a branch that changes the `debian` role (the nodes whose
`os.id` is debian, about 60%), and the facts of N nodes (default 10,000; `drover-seed
facts`, about 1.5 KB each, as the seeded fleet has them); then times
`drover-server diff --env BRANCH --against main --facts-dir DIR` for each
branch (every node compiled twice, on every core), checking the exit code
and the number of nodes it says change. Then (unless --no-page) the same
analysis through the dashboard's impact page: `drover-seed fleet` stores the
same fleet (facts included) in a server's database, the release server
mirrors the git repository (every branch an environment) and
`GET /impact?env=BRANCH&against=main` is timed: the first request (both
compiles of every node, on the blocking pool), the second (the cached
answer), and meanwhile the slowest `GET /healthz` of a second connection (the
server stays responsive while it compiles). Figures go to bench-out/diff.json.

Target: 10,000 nodes in under a minute on this machine.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

CHANGED = re.compile(r'id="impact-changed"><span class="count">(\d+)</span>')


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
        # drover-seed fleet reads a plain directory, as a development-mode server would.
        plain = os.path.join(work, "plain")
        shutil.copytree(repo, plain)
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
        page = [] if "--no-page" in argv else time_page(release, work, repo, plain, nodes)
    verdict = all(r["seconds"] < 60 for r in results + page)
    print(f"target: under 60 s for {nodes} nodes: {'met' if verdict else 'NOT MET'}")
    os.makedirs(os.path.join(top, "bench-out"), exist_ok=True)
    with open(os.path.join(top, "bench-out", "diff.json"), "w") as f:
        json.dump({"nodes": nodes, "runs": results, "page": page, "cores": os.cpu_count()}, f,
                  indent=2)


def time_page(release, work, repo, plain, nodes):
    """The impact page of a server that stores `nodes` nodes: per branch, the
    first request (the analysis), the second (cached), and the slowest
    /healthz of another connection while the first ran."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import bench_dashboard

    server = os.path.join(release, "drover-server")
    seed = bench_dashboard.seeder(release)
    data = os.path.join(work, "data")
    # First start: migrations, the CA, the operator token and the mirror.
    bench_dashboard.Server(server, work, repo, data, "init").stop()
    code = subprocess.run([seed, "fleet", "--db", os.path.join(data, "drover.db"), "--repo", plain,
                           "--nodes", str(nodes), "--reports", str(nodes),
                           "--summary", os.path.join(work, "fleet.json")]).returncode
    if code != 0:
        sys.exit(f"drover-seed exited {code}")
    live = bench_dashboard.Server(server, work, repo, data, "page")
    results = []
    try:
        client = bench_dashboard.Client(live.addr, data)
        for branch in ("motd", "debian"):
            path = f"/impact?env={branch}&against=main"
            done = threading.Event()
            health = []

            def probe():
                other = bench_dashboard.Client(live.addr, data)
                while not done.is_set():
                    status, _, ms = other.get("/healthz")
                    health.append(ms if status == 200 else float("inf"))
                    time.sleep(0.05)
                other.close()

            prober = threading.Thread(target=probe)
            prober.start()
            status, body, first_ms = client.get(path)
            done.set()
            prober.join()
            if status != 200:
                live.fail(f"answered {status} to {path}: {body[:500]}")
            found = CHANGED.search(body)
            if not found:
                live.fail(f"{path} shows no count of changed nodes: {body[:500]}")
            changed = int(found.group(1))
            status, again, again_ms = client.get(path)
            if status != 200 or again != body:
                live.fail(f"the second {path} differs from the first")
            results.append({"branch": branch, "nodes": nodes, "changed": changed, "page": True,
                            "seconds": round(first_ms / 1000, 2), "cached_ms": round(again_ms, 1),
                            "page_kib": round(len(body) / 1024, 1),
                            "healthz_max_ms": round(max(health, default=0), 1),
                            "healthz_requests": len(health)})
            print(f"impact page {branch}: first {first_ms / 1000:.1f} s ({changed} of {nodes} "
                  f"change, {len(body) / 1024:.0f} KiB), cached {again_ms:.0f} ms; /healthz "
                  f"meanwhile at most {max(health, default=0):.0f} ms over {len(health)} requests")
        client.close()
    finally:
        live.stop()
    return results
