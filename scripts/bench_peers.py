"""Side-by-side benchmark: the same desired state through `puppet apply`,
`cf-agent -K` and `drover-agent apply`.

The desired state is N files of S bytes (fixed, distinct text per file, mode
0644) in one directory, for each size of --sizes. Each tool gets it the way
its users write it:

- drover: a catalog repository whose role has one `[[file]]` per path with
  `source = "files/fNNNNN"`, compiled once with `drover-server compile
  --contents-dir` (as the server would) and converged with `drover-agent
  apply catalog.json --contents-dir`.
  A second row, `drover-agent apply REPO`, compiles on every run, as
  `puppet apply` does.
- Puppet: a manifest of `file` resources with `source => '/abs/path'` (a
  static file, as a Puppet user writes it outside a module) and `mode`;
  `puppet apply --detailed-exitcodes` with its confdir, vardir, logdir and
  rundir in the work directory. Puppet compares files by md5, its default.
- CFEngine: a policy with one `files:` promise per path, `copy_from` a local
  source and `perms => mode 644`, run as `cf-agent -K -f POLICY -w WORKDIR`.
  `compare => "digest"` (md5 of source and promiser) is the fair row: it
  checks content as the others do. The default `compare => "mtime"` is
  measured too, but it copies only when the source is newer than the file,
  so it does not repair content drift (the table marks it).

Scenarios: `first run` (fresh tool state and no files, every sample), `no
change` (right after a first run) and `10% drifted` (every tenth file gets
other content of the same size and mode 0600 before each sample). Wall time
is the median over --runs samples, peak RSS the maximum (GNU time's %M).
Every first and drift run is verified on disk (content byte for byte and mode
of every file) and every no-change run must leave every file's ctime as it
was, so a tool that silently did nothing is caught.

Writes bench-out/peers.json (schema_version 1).
"""

import datetime
import json
import os
import platform
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

SCHEMA_VERSION = 1
DRIFT_EVERY = 10  # every tenth file drifts: 10%

# Issue 7's targets.
NOCHANGE_VS_CFENGINE = 10.0
NOCHANGE_VS_PUPPET = 100.0
NOCHANGE_RSS_MIB = 10.0
NOCHANGE_10K_MS = 100.0


def fail(message):
    sys.exit(f"scripts/bench peers: {message}")


# ---------------------------------------------------------------- installing


def installed(binary):
    return shutil.which(binary) is not None


def apt_candidate(package):
    out = subprocess.run(
        ["apt-cache", "policy", package], stdout=subprocess.PIPE, text=True
    ).stdout
    for line in out.splitlines():
        if line.strip().startswith("Candidate:"):
            value = line.split(":", 1)[1].strip()
            return None if value == "(none)" else value
    return None


def ensure_peers():
    """Debian's Puppet and CFEngine, installed when missing (as root)."""
    wanted = []
    if not installed("puppet"):
        wanted.append("puppet-agent")
    if not installed("cf-agent"):
        wanted.append("cfengine3")
    if not wanted:
        return
    if os.geteuid() != 0:
        fail(f"needs {' and '.join(wanted)}: run as root, or apt-get install {' '.join(wanted)}")
    # apt-get update only when apt does not know the packages yet.
    if any(apt_candidate(p) is None for p in wanted):
        subprocess.run(["apt-get", "update", "-qq"], check=True)
    if "puppet-agent" in wanted and apt_candidate("puppet-agent") is None:
        wanted[wanted.index("puppet-agent")] = "puppet"  # older Debian names it so
    missing = [p for p in wanted if apt_candidate(p) is None]
    if missing:
        fail(f"apt has no candidate for {', '.join(missing)}: check /etc/apt/sources.list")
    print(f"installing {' '.join(wanted)} ...", file=sys.stderr, flush=True)
    # Another apt may be running (scripts/test installs too): wait for its lock.
    subprocess.run(
        ["apt-get", "-o", "DPkg::Lock::Timeout=600", "install", "-y", "-qq", *wanted],
        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        stdout=subprocess.DEVNULL,
        check=True,
    )
    for binary in ("puppet", "cf-agent"):
        if not installed(binary):
            fail(f"{binary} is still missing after apt-get install {' '.join(wanted)}")


def first_line(argv):
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return proc.stdout.strip().splitlines()[0] if proc.stdout.strip() else "unknown"


def tool_versions(top, agent):
    commit = first_line(["git", "-C", top, "describe", "--always", "--dirty"])
    built = datetime.datetime.fromtimestamp(os.stat(agent).st_mtime, datetime.timezone.utc)
    return {
        "drover-agent": f"{first_line([agent, '--version'])} ({commit}, built {built:%Y-%m-%d %H:%M} UTC)",
        "puppet": first_line(["puppet", "--version"]),
        "cf-agent": first_line(["cf-agent", "-V"]),
    }


def machine(work):
    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    fstype = subprocess.run(
        ["df", "--output=fstype", work], stdout=subprocess.PIPE, text=True
    ).stdout.split()[-1]
    with open("/proc/meminfo") as f:
        mem_kib = int(f.readline().split()[1])
    return {
        "cpu_model": cpu,
        "cores": os.cpu_count(),
        "memory_mib": mem_kib // 1024,
        "kernel": platform.release(),
        "os": first_line(["sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"]),
        "work_dir": work,
        "work_dir_fstype": fstype,
        "load_average_at_start": list(os.getloadavg()),
    }


# ------------------------------------------------------- the desired state


def content_of(i, size):
    """Fixed, distinct text for file i: a header, then seeded hex lines."""
    head = f"managed file {i}\n".encode()
    body = random.Random(i).randbytes(size // 2 + 1).hex().encode()
    lines = b"\n".join(body[k:k + 63] for k in range(0, len(body), 63))
    return (head + lines)[: size - 1] + b"\n"


def name(i):
    return f"f{i:05}"


def write_sources(src, count, size):
    os.makedirs(src)
    for i in range(count):
        with open(os.path.join(src, name(i)), "wb") as f:
            f.write(content_of(i, size))


def write_drover_repo(repo, root, count):
    """The repository: its files/ directory is the sources the peers copy from too."""
    os.makedirs(os.path.join(repo, "roles"))
    with open(os.path.join(repo, "nodes.toml"), "w") as f:
        f.write('[[node]]\nmatch = "*"\nroles = ["bench"]\n')
    with open(os.path.join(repo, "roles", "bench.toml"), "w") as f:
        f.write(f'[[directory]]\npath = "{root}"\nmode = "0755"\n\n')
        for i in range(count):
            f.write(
                f'[[file]]\npath = "{root}/{name(i)}"\n'
                f'source = "files/{name(i)}"\nmode = "0644"\n\n'
            )


def write_puppet_manifest(path, root, src, count):
    with open(path, "w") as f:
        f.write(f"file {{ '{root}': ensure => directory, mode => '0755' }}\n")
        for i in range(count):
            f.write(
                f"file {{ '{root}/{name(i)}':\n  ensure => file,\n"
                f"  source => '{src}/{name(i)}',\n  mode   => '0644',\n}}\n"
            )


def write_cf_policy(path, root, src, count, compare):
    with open(path, "w") as f:
        f.write('body common control\n{\n  bundlesequence => { "bench" };\n}\n\n')
        f.write("bundle agent bench\n{\n  files:\n")
        f.write(f'    "{root}/."\n      create => "true",\n      perms => mode("755");\n\n')
        for i in range(count):
            f.write(
                f'    "{root}/{name(i)}"\n      copy_from => local_copy("{src}/{name(i)}"),\n'
                '      perms => mode("644");\n\n'
            )
        f.write("}\n\n")
        f.write(
            "body copy_from local_copy(from)\n{\n  source => \"$(from)\";\n"
            f'  compare => "{compare}";\n}}\n\n'
        )
        f.write('body perms mode(m)\n{\n  mode => "$(m)";\n}\n')
    # cf-agent refuses a policy file others may write.
    os.chmod(path, 0o600)


# ------------------------------------------------------------------- tools


def cf_workdir(workdir):
    """A CFEngine work directory as the package lays out /var/lib/cfengine3:
    cf-agent validates the policy with WORKDIR/bin/cf-promises."""
    os.symlink(os.path.dirname(shutil.which("cf-promises")), os.path.join(workdir, "bin"))


class Tool:
    """One way to converge the desired state; `argv` is what is timed."""

    def __init__(self, label, argv, state_dirs, codes, checks_content=True, stdout_errors=None,
                 setup=None):
        self.label = label
        self.setup = setup  # run after the state dirs are made afresh
        self.argv = argv
        self.state_dirs = state_dirs  # removed before every first run
        self.codes = codes  # scenario -> accepted exit codes
        self.checks_content = checks_content
        self.stdout_errors = stdout_errors  # a marker of an error in the output

    def reset(self, root):
        for d in [root, *self.state_dirs]:
            shutil.rmtree(d, ignore_errors=True)
        for d in self.state_dirs:
            os.makedirs(d, mode=0o700)
        if self.setup:
            self.setup()


DROVER_CODES = {"first run": (2,), "no change": (0,), "drifted": (2,)}
PUPPET_CODES = DROVER_CODES  # --detailed-exitcodes: the same meaning
CF_CODES = {"first run": (0,), "no change": (0,), "drifted": (0,)}


def make_tools(release, agent, work, root, repo, src, count, with_repo_row, cf_compares):
    server = os.path.join(release, "drover-server")
    catalog = os.path.join(work, "catalog.json")
    # Contents beside the catalog, by sha256, as the server serves them to a
    # node: a no-change run reads only the catalog, not 16 KiB a file of base64.
    contents = os.path.join(work, "contents")
    with open(catalog, "w") as out:
        subprocess.run(
            [server, "compile", "--repo", repo, "--node", "bench", "--contents-dir", contents],
            stdout=out,
            check=True,
        )
    state = os.path.join(work, "drover-state")
    apply = [agent, "apply", catalog, "--contents-dir", contents, "--state-dir", state]
    tools = [Tool("drover-agent apply catalog", apply, [state], DROVER_CODES)]
    if with_repo_row:
        tools.append(
            Tool(
                "drover-agent apply REPO",
                [agent, "apply", repo, "--node", "bench", "--state-dir", state],
                [state],
                DROVER_CODES,
            )
        )

    puppet = os.path.join(work, "puppet")
    manifest = os.path.join(work, "bench.pp")
    write_puppet_manifest(manifest, root, src, count)
    dirs = {k: os.path.join(puppet, k) for k in ("conf", "var", "log", "run", "code")}
    tools.append(
        Tool(
            "puppet apply",
            [
                "puppet", "apply", "--detailed-exitcodes", "--color=false",
                "--confdir", dirs["conf"], "--vardir", dirs["var"], "--logdir", dirs["log"],
                "--rundir", dirs["run"], "--codedir", dirs["code"], manifest,
            ],
            list(dirs.values()),
            PUPPET_CODES,
        )
    )

    for compare in cf_compares:
        policy = os.path.join(work, f"bench-{compare}.cf")
        write_cf_policy(policy, root, src, count, compare)
        cfwork = os.path.join(work, f"cfengine-{compare}")
        tools.append(
            Tool(
                f"cf-agent ({compare})",
                ["cf-agent", "-K", "--color=never", "-w", cfwork, "-f", policy],
                [cfwork],
                CF_CODES,
                checks_content=(compare == "digest"),
                stdout_errors=" error: ",
                setup=lambda d=cfwork: cf_workdir(d),
            )
        )
    return tools


# ---------------------------------------------------------------- measuring


def timed(tool, scenario):
    """Runs the tool once; returns (wall seconds, peak RSS KiB)."""
    with tempfile.NamedTemporaryFile("r") as rss:
        start = time.perf_counter()
        proc = subprocess.run(
            ["/usr/bin/time", "-q", "-f", "%M", "-o", rss.name, *tool.argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        wall = time.perf_counter() - start
        out = proc.stdout.decode(errors="replace") + proc.stderr.decode(errors="replace")
        if proc.returncode not in tool.codes[scenario]:
            fail(
                f"{tool.label} ({scenario}) exited {proc.returncode}, expected "
                f"{' or '.join(map(str, tool.codes[scenario]))}:\n{out[-3000:]}"
            )
        if tool.stdout_errors and tool.stdout_errors in out:
            fail(f"{tool.label} ({scenario}) reported errors:\n{out[-3000:]}")
        return wall, int(rss.read().split()[-1])


def harness_overhead():
    """Median wall ms of timing /bin/true: what every figure carries in
    fork, exec and GNU time on top of the tool itself."""
    tool = Tool("true", ["true"], [], {"no change": (0,)})
    return round(statistics.median(timed(tool, "no change")[0] for _ in range(21)) * 1000, 2)


def verify(root, src, count):
    """Names of the files whose content or mode is not the desired one."""
    wrong = []
    for i in range(count):
        path = os.path.join(root, name(i))
        try:
            st = os.stat(path)
            with open(path, "rb") as a, open(os.path.join(src, name(i)), "rb") as b:
                same = a.read() == b.read()
        except FileNotFoundError:
            wrong.append(name(i))
            continue
        if not same or st.st_mode & 0o7777 != 0o644:
            wrong.append(name(i))
    return wrong


def ctimes(root, count):
    return [os.stat(os.path.join(root, name(i))).st_ctime_ns for i in range(count)]


def drift(root, count, size, round_):
    """Every tenth file: other content of the same size, and mode 0600."""
    for i in range(0, count, DRIFT_EVERY):
        path = os.path.join(root, name(i))
        with open(path, "wb") as f:
            f.write(content_of(1_000_000 + round_ * count + i, size))
        os.chmod(path, 0o600)


def summary(samples):
    walls = [w for w, _ in samples]
    return {
        "wall_ms_median": statistics.median(walls) * 1000,
        "wall_ms_samples": [round(w * 1000, 2) for w in walls],
        "peak_rss_kib": max(r for _, r in samples),
    }


def bench_tool(tool, root, src, count, size, runs):
    """The three scenarios for one tool; fails on a run that did not converge."""
    label = tool.label
    result = {"checks_content": tool.checks_content}
    first = []
    for _ in range(runs):
        tool.reset(root)
        first.append(timed(tool, "first run"))
        wrong = verify(root, src, count)
        if wrong:
            fail(f"{label}: after a first run {len(wrong)} files are wrong, e.g. {wrong[0]}")
    result["first run"] = summary(first)
    progress(f"  {label}: first run {result['first run']['wall_ms_median']:.0f} ms")

    still = []
    for _ in range(runs):
        before = ctimes(root, count)
        still.append(timed(tool, "no change"))
        touched = sum(a != b for a, b in zip(before, ctimes(root, count)))
        if touched:
            fail(f"{label}: a no-change run touched {touched} files")
    result["no change"] = summary(still)
    progress(f"  {label}: no change {result['no change']['wall_ms_median']:.1f} ms")

    drifted = []
    unrepaired = 0
    for k in range(runs):
        drift(root, count, size, k)
        drifted.append(timed(tool, "drifted"))
        wrong = verify(root, src, count)
        if wrong and tool.checks_content:
            fail(f"{label}: after a drift run {len(wrong)} files are still wrong, e.g. {wrong[0]}")
        unrepaired = max(unrepaired, len(wrong))
        if wrong:
            # The mtime comparison leaves drifted content: put it right so
            # the next sample starts from the same state as the others.
            for n in wrong:
                shutil.copyfile(os.path.join(src, n), os.path.join(root, n))
                os.chmod(os.path.join(root, n), 0o644)
    result["drifted"] = summary(drifted)
    result["drifted"]["files_drifted"] = len(range(0, count, DRIFT_EVERY))
    result["drifted"]["files_left_wrong"] = unrepaired
    progress(f"  {label}: drifted {result['drifted']['wall_ms_median']:.0f} ms")
    shutil.rmtree(root, ignore_errors=True)
    return result


def progress(line):
    print(line, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- reporting

SCENARIOS = ("first run", "no change", "drifted")
DROVER = "drover-agent apply catalog"


def print_size(files, size, tools):
    print(f"\n{files} files of {size // 1024} KiB: median wall ms / peak RSS MiB")
    print(f"{'tool':<28}" + "".join(f"{s:>22}" for s in SCENARIOS))
    for label, result in tools.items():
        cells = []
        for s in SCENARIOS:
            r = result[s]
            mark = "" if r.get("files_left_wrong", 0) == 0 else "*"
            cells.append(f"{r['wall_ms_median']:>10.1f}{mark:1} / {r['peak_rss_kib'] / 1024:>6.1f}")
        print(f"{label:<28}" + "".join(f"{c:>22}" for c in cells))
    if any(r["drifted"].get("files_left_wrong") for r in tools.values()):
        print("* left drifted content unrepaired (compares mtimes, not content)")


def ratios_of(tools):
    """peer median / drover median per scenario: how many times faster drover is."""
    ratios = {}
    for drover in (t for t in tools if t.startswith("drover")):
        for peer in (t for t in tools if not t.startswith("drover")):
            ratios[f"{drover} vs {peer}"] = {
                s: tools[peer][s]["wall_ms_median"] / tools[drover][s]["wall_ms_median"]
                for s in SCENARIOS
            }
    return ratios


def print_ratios(ratios):
    print("\nx times faster (peer median / drover median)")
    print(f"{'':<52}" + "".join(f"{s:>12}" for s in SCENARIOS))
    for pair, by in ratios.items():
        print(f"{pair:<52}" + "".join(f"{by[s]:>11.1f}x" for s in SCENARIOS))


def judge(sizes):
    """The issue's targets, each met or not, from the figures measured."""
    targets = []
    small = sizes.get(1000)
    if small:
        nochange = small["tools"][DROVER]["no change"]
        by = small["ratios"]
        for peer, want in (("cf-agent (digest)", NOCHANGE_VS_CFENGINE), ("puppet apply", NOCHANGE_VS_PUPPET)):
            got = by.get(f"{DROVER} vs {peer}", {}).get("no change")
            if got is not None:
                targets.append(
                    {"target": f"1,000 files no change >= {want:.0f}x faster than {peer}",
                     "value": f"{got:.1f}x", "met": got >= want}
                )
        mib = nochange["peak_rss_kib"] / 1024
        targets.append({"target": f"1,000 files no change peak RSS < {NOCHANGE_RSS_MIB:.0f} MiB",
                        "value": f"{mib:.1f} MiB", "met": mib < NOCHANGE_RSS_MIB})
    big = sizes.get(10000)
    if big:
        ms = big["tools"][DROVER]["no change"]["wall_ms_median"]
        targets.append({"target": f"10,000 files no change < {NOCHANGE_10K_MS:.0f} ms",
                        "value": f"{ms:.1f} ms", "met": ms < NOCHANGE_10K_MS})
    return targets


def print_targets(targets):
    if not targets:
        return
    print("\ntargets (issue 7)")
    for t in targets:
        print(f"  {t['target']:<62} {t['value']:>10}  {'met' if t['met'] else 'MISSED'}")


# --------------------------------------------------------------------- main


def run(top, release, agent, sizes, file_bytes, runs, with_repo_row=True, cf_mtime=True):
    if runs < 1:
        fail("--runs must be at least 1")
    ensure_peers()
    # SIGTERM unwinds like Ctrl-C, so the work directory (up to a few
    # hundred MB of files) is removed either way.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("scripts/bench peers: terminated"))
    started = datetime.datetime.now(datetime.timezone.utc)
    work = tempfile.mkdtemp(prefix="drover-bench-peers-")
    try:
        report = {
            "schema_version": SCHEMA_VERSION,
            "timestamp": started.isoformat(timespec="seconds"),
            "machine": machine(work),
            "versions": tool_versions(top, agent),
            "harness_overhead_ms": harness_overhead(),
            "config": {
                "file_bytes": file_bytes,
                "runs": runs,
                "drift": f"every {DRIFT_EVERY}th file: new content of the same size, mode 0600",
                "puppet_file": "source => '/abs/path', checksum md5 (default)",
                "cfengine_file": "copy_from local source, compare digest (md5) and mtime (default)",
                "drover_file": "source = \"files/...\", catalog compiled once, contents beside it (--contents-dir)",
            },
            "sizes": {},
        }
        out = os.path.join(top, "bench-out")
        os.makedirs(out, exist_ok=True)
        for count in sizes:
            progress(f"{count} files of {file_bytes} bytes ...")
            base = os.path.join(work, f"n{count}")
            repo, root = os.path.join(base, "repo"), os.path.join(base, "managed")
            src = os.path.join(repo, "files")
            write_sources(src, count, file_bytes)
            write_drover_repo(repo, root, count)
            compares = ("digest", "mtime") if cf_mtime else ("digest",)
            tools = make_tools(release, agent, base, root, repo, src, count, with_repo_row, compares)
            results = {t.label: bench_tool(t, root, src, count, file_bytes, runs) for t in tools}
            report["sizes"][count] = {"files": count, "tools": results, "ratios": ratios_of(results)}
            shutil.rmtree(base, ignore_errors=True)
            # Written after every size, so a long run stopped midway keeps
            # what it measured ("complete" says whether every size ran).
            write_report(out, report, complete=count == sizes[-1])
        report["duration_s"] = round(
            (datetime.datetime.now(datetime.timezone.utc) - started).total_seconds(), 1
        )
        report["machine"]["load_average_at_end"] = list(os.getloadavg())
    finally:
        shutil.rmtree(work, ignore_errors=True)

    m = report["machine"]
    print(f"\nscripts/bench peers: {m['cpu_model']}, {m['cores']} cores, {m['memory_mib']} MiB, "
          f"Linux {m['kernel']}, {m['work_dir_fstype']}; {runs} runs per scenario")
    print("; ".join(f"{k} {v}" for k, v in report["versions"].items()))
    print(f"every wall time includes {report['harness_overhead_ms']} ms of fork, exec and GNU time "
          f"(median for /bin/true)")
    for count, entry in report["sizes"].items():
        print_size(count, file_bytes, entry["tools"])
        print_ratios(entry["ratios"])
    print_targets(report["targets"])
    write_report(out, report, complete=True)
    print(f"\nwrote {os.path.join(out, 'peers.json')} ({report['duration_s']} s)")


def write_report(out, report, complete):
    """bench-out/peers.json, replaced atomically."""
    report["complete"] = complete
    report["targets"] = judge(report["sizes"])
    path = os.path.join(out, "peers.json")
    with open(path + ".tmp", "w") as f:
        json.dump(report, f, indent=2)
        f.write("\n")
    os.replace(path + ".tmp", path)
