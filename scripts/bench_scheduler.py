"""scripts/bench scheduler: the pure scheduler on a generated fleet.

Builds (unless --no-build) and runs the release example
catalog/examples/schedule_bench.rs: 20,000 replicas of 200 apps onto 5,000
nodes from a fixed seed, once with the default policy and once with a
bin-packing one (`most_allocated`), each timed as one `schedule` call with
`Explain::Top(3)` and checked by the example's own code (capacity, host
ports, selectors, taints, health, distinct hosts), with the spread skew
and the nodes used against `packing_lower_bound`; then each run again with
1% of the nodes lost. Other arguments go to the example (`--nodes`,
`--apps`, `--replicas`, `--seed`). Figures go to bench-out/scheduler.json.

Targets: at least 5,000 placements/s, 0 violations, and with
most_allocated at most 15% more nodes than the lower bound.
"""

import json
import os
import subprocess
import sys


def run(top, argv):
    argv = list(argv)
    build = "--no-build" not in argv
    argv = [a for a in argv if a != "--no-build"]
    if build:
        print("building the release schedule_bench example ...", file=sys.stderr, flush=True)
        subprocess.run(
            ["cargo", "build", "--release", "--quiet", "-p", "drover-catalog", "--example", "schedule_bench"],
            cwd=top,
            check=True,
        )
    binary = os.path.join(top, "target", "release", "examples", "schedule_bench")
    proc = subprocess.run([binary, *argv], capture_output=True, text=True)
    sys.stderr.write(proc.stderr)
    if proc.returncode != 0:
        sys.exit(f"scripts/bench scheduler: schedule_bench exited {proc.returncode}")
    runs = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    print("\n".join(line for line in proc.stdout.splitlines() if line and not line.startswith("{")))
    verdict = lambda ok: "met" if ok else "MISSED"
    for r in runs:
        print(f"target {r['policy']} >= 5,000 placements/s: {r['placements_per_sec']:.0f},"
              f" {verdict(r['placements_per_sec'] >= 5000)}")
        print(f"target {r['policy']} 0 violations: {r['violations']} (after 1% lost:"
              f" {r['reschedule_violations']}), {verdict(r['violations'] + r['reschedule_violations'] == 0)}")
        if r["policy"] == "most_allocated":
            over = (r["used_over_bound"] - 1) * 100
            print(f"target most_allocated nodes used within 15% of the lower bound: {r['nodes_used']}"
                  f" for {r['lower_bound']} ({over:+.1f}%), {verdict(over <= 15)}")
    os.makedirs(os.path.join(top, "bench-out"), exist_ok=True)
    with open(os.path.join(top, "bench-out", "scheduler.json"), "w") as f:
        json.dump({"cpus": os.cpu_count(), "runs": runs}, f, indent=2)
