"""bench/run: builds the benchmarks, runs them with time bounds, writes the results file and
draws the charts. See docs/benchmarks.md; `bench/run --help` lists the options.

Each bench_<name> program runs in a session of its own, with MP_BENCH_JSONL naming a file
where it appends one JSON object per measurement, target, failure and note. A program
that outlives --timeout is killed with everything in its session and reported as a
failure line; so is anything a program leaves running; then the run goes on.
"""
import argparse
import datetime
import json
import os
import platform
import select
import shutil
import signal
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYTHON = "/usr/bin/python3"
WINE_NOTE = "Windows build run under Wine on this Linux machine: Wine is not Windows"


def log(*parts):
    print(*parts, flush=True)


# ---- building -------------------------------------------------------------------------

def cmake_build(src, build, extra, logname):
    """Configures and builds the bench folder; returns True, or prints the log's tail."""
    os.makedirs(build, exist_ok=True)
    path = os.path.join(build, logname)
    with open(path, "w") as out:
        for cmd in (["cmake", "-S", src, "-B", build, "-DCMAKE_BUILD_TYPE=Release",
                     "-DMP_BUILD_TESTS=OFF", "-DMP_BUILD_EXAMPLES=OFF"] + extra,
                    ["nice", "cmake", "--build", build, "-j2"]):
            if subprocess.call(cmd, stdout=out, stderr=subprocess.STDOUT) != 0:
                out.flush()
                with open(path) as f:
                    log("".join(f.readlines()[-40:]))
                log(f"bench/run: building {build} failed (log: {path})")
                return False
    return True


def programs_in(build, suffix=""):
    names = []
    for f in sorted(os.listdir(build)):
        if f.startswith("bench_") and f.endswith(suffix) and os.access(os.path.join(build, f), os.X_OK):
            names.append(f[len("bench_"):len(f) - len(suffix) if suffix else None])
    return names


# ---- running one program, bounded ------------------------------------------------------

def session_members(sid):
    """Live pids (other than ourselves) whose session is sid, with their command lines."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
            fields = stat[stat.rindex(")") + 2:].split()
            if int(fields[3]) == sid and fields[0] != "Z":  # a zombie is already dead
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    found[int(entry)] = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile
    return found


def is_wine_service(cmdline):
    """Wine's own service processes (started by the first Windows program, kept by the
    persistent wineserver) are not a benchmark's leftovers."""
    low = cmdline.lower()
    return "c:\\windows\\system32\\" in low or "wineserver" in low


def sweep(sid):
    """Kills what a finished (or killed) program left in its session; returns what it was."""
    left = {p: c for p, c in session_members(sid).items() if not is_wine_service(c)}
    for pid in left:
        try:
            fd = os.pidfd_open(pid)  # readable once the process is gone
        except OSError:
            continue
        try:
            os.kill(pid, signal.SIGKILL)
            select.select([fd], [], [], 10)
        except OSError:
            pass
        finally:
            os.close(fd)
    return left


def kill_session(proc):
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        pass
    proc.wait()
    sweep(proc.pid)


def interrupted(signum, frame):
    raise KeyboardInterrupt


def run_program(argv, env, timeout):
    """Runs argv in a new session, echoing its output; returns (exit code or None if it was
    killed for overrunning, seconds, output, leftovers)."""
    start = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, env=env, start_new_session=True, cwd=ROOT)
    chunks, timed_out = [], False
    fd = proc.stdout.fileno()
    try:
        while True:
            left = timeout - (time.monotonic() - start)
            if left <= 0:
                timed_out = True
                break
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                continue
            data = os.read(fd, 65536)
            if not data:
                break
            text = data.decode(errors="replace")
            chunks.append(text)
            sys.stdout.write(text)
            sys.stdout.flush()
    except BaseException:
        # Interrupted (Ctrl-C reaches only the runner: the program has a session of its
        # own): take the program and everything in its session down with the runner.
        kill_session(proc)
        raise
    if timed_out:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass
    code = proc.wait()
    proc.stdout.close()
    leftovers = sweep(proc.pid)
    return (None if timed_out else code), time.monotonic() - start, "".join(chunks), leftovers


# ---- Wine ------------------------------------------------------------------------------

def wine_env():
    env = dict(os.environ)
    env["WINEPREFIX"] = os.path.join(ROOT, "build", "mingw", "wineprefix")
    env["WINEDEBUG"] = "-all"
    env["WINEDLLOVERRIDES"] = "mscoree,mshtml="
    return env


def wine_start(env):
    """Starts a persistent wineserver and Wine's services with their streams detached (see
    docs/platform-notes.md: otherwise they hold the runner's pipes open)."""
    os.makedirs(env["WINEPREFIX"], exist_ok=True)
    quiet = dict(stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                 env=env, start_new_session=True)
    subprocess.call(["wineserver", "-p"], **quiet)
    subprocess.call(["wine", "wineboot"], **quiet, timeout=300)


def wine_stop(env):
    subprocess.call(["wineserver", "-k"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL, env=env)


def windows_path(path):
    return "Z:" + path.replace("/", "\\")


# ---- machine facts ---------------------------------------------------------------------

def first_line(cmd):
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60).stdout
        return out.strip().splitlines()[0] if out.strip() else ""
    except (OSError, subprocess.SubprocessError):
        return ""


def machine_facts(wine):
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), "")
    except OSError:
        pass
    mem = ""
    try:
        with open("/proc/meminfo") as f:
            kib = int(next(l for l in f if l.startswith("MemTotal")).split()[1])
            mem = f"{kib / 1048576:.1f} GiB"
    except (OSError, StopIteration, ValueError):
        pass
    os_name = ""
    try:
        with open("/etc/os-release") as f:
            os_name = next((l.split("=", 1)[1].strip().strip('"') for l in f
                            if l.startswith("PRETTY_NAME=")), "")
    except OSError:
        pass
    return {
        "cpu": cpu, "cores": os.cpu_count(), "memory": mem,
        "kernel": platform.release(), "os": os_name, "hostname": platform.node(),
        "compiler": first_line(["cc", "--version"]),
        "python": first_line([PYTHON, "--version"]),
        "wine": first_line(["wine", "--version"]) if wine else None,
        "loadavg_start": list(os.getloadavg()),
    }


def git_facts():
    def git(*args):
        return first_line(["git", "-C", ROOT] + list(args))
    dirty = subprocess.call(["git", "-C", ROOT, "diff", "--quiet", "HEAD", "--"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) != 0
    return {"commit": git("rev-parse", "HEAD"), "branch": git("rev-parse", "--abbrev-ref", "HEAD"),
            "describe": git("describe", "--always", "--dirty"), "dirty": dirty}


# ---- the run ---------------------------------------------------------------------------

def read_records(path):
    records = []
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                line = line.strip()
                if line:
                    try:
                        records.append(json.loads(line))
                    except json.JSONDecodeError:
                        pass  # a line cut short by a kill
    except OSError:
        pass
    return records


def run_one(name, plat, argv, env, args, scratch, results):
    jsonl = os.path.join(scratch, f"{name}-{plat}.jsonl")
    if os.path.exists(jsonl):
        os.unlink(jsonl)
    env = dict(env)
    env["MP_BENCH_JSONL"] = windows_path(jsonl) if plat == "wine" else jsonl
    env.setdefault("MP_BENCH_PYTHON", PYTHON)
    log(f"== bench_{name} ({plat})")
    code, seconds, output, leftovers = run_program(
        argv + ["--rounds", str(args.rounds), "--peer-timeout", str(args.peer_timeout)],
        env, args.timeout)
    records = read_records(jsonl)
    failures = [r for r in records if r.get("type") == "failure"]
    extra = []
    if code is None:
        extra.append(f"no end within {args.timeout} s: killed with its session")
    elif code != 0 and not failures:
        extra.append(f"exited with code {code}: " + " | ".join(output.strip().splitlines()[-3:]))
    if leftovers:
        extra.append(f"left {len(leftovers)} process(es) running, killed: "
                     + "; ".join(f"{p} {c[:80]}" for p, c in sorted(leftovers.items())))
    for reason in extra:
        line = f"failure {name}: {reason}"
        log(line)
        failures.append({"type": "failure", "benchmark": name, "platform": plat,
                         "case": None, "peer": None, "reason": reason})
    status = "timeout" if code is None else ("ok" if code == 0 and not failures else "failed")
    results["benchmarks"].append({"name": name, "platform": plat, "status": status,
                                  "exit_code": code, "seconds": round(seconds, 1),
                                  "output": output[-20000:]})
    for r in records:
        r.setdefault("platform", plat)
        kind = r.get("type")
        if kind == "measure":
            results["measurements"].append(r)
        elif kind == "target":
            results["targets"].append(r)
        elif kind == "note":
            results["notes"].append(r)
        elif kind == "start":
            results["benchmarks"][-1]["platform_detail"] = r.get("platform_detail")
    results["failures"].extend(failures)


def self_test(build):
    """Checks that no peer can hang a run: bench/selftest_harness makes peers fail in each
    way (a bounded wait running out, a wrong message, a Python peer that hangs with a child,
    one that crashes, a wait nobody bounded) and this checks the lines, the exit codes, the
    time taken and that nothing is left running. Returns the number of failed checks."""
    exe = [os.path.join(build, "selftest_harness")]
    env = dict(os.environ, MP_BENCH_PYTHON=PYTHON)
    env.pop("MP_BENCH_JSONL", None)
    bad = 0

    def check(ok, what):
        nonlocal bad
        bad += not ok
        log(f"self-test: {'PASS' if ok else 'FAIL'} {what}")

    log("== the harness: failing peers give failure lines; the watchdog stops a stuck one")
    code, secs, out, left = run_program(exe + ["--rounds", "2", "--peer-timeout", "2", "--stuck"],
                                        env, 120)
    case = "failure selftest: bounded failures / "
    check(case + "bounded wait: the wait ended: timed out" in out, "a bounded wait times out")
    check(case + "wrong message: message 7 is corrupt" in out, "a peer's own failure is reported")
    check(case + "Python sleeper: timed out after 2 s (killed with its children)" in out,
          "a hanging Python peer is killed")
    check(case + "Python crash: exit code 1: the peer crashed on purpose" in out,
          "a crashing Python peer is reported")
    check("multiproc quick" in out and "[1..1]" in out, "the other peers are still measured")
    check("target selftest_quick_vs_bounded ratio=nan goal=<=1 MISS" in out
          and "(no measurement: bounded wait failed)" in out, "a target without its peer misses")
    check("failure selftest: unbounded wait / stuck: no result within 17 s" in out and code == 3,
          f"the watchdog stops a stuck peer (exit code {code})")
    check(secs < 60, f"all of it took {secs:.0f} s (budget 2 s per peer, 15 s grace)")
    check(not left, f"nothing is left running ({len(left)} left)")

    log("== the runner: a program past --timeout is killed with everything it started")
    code, secs, out, left = run_program(exe + ["--peer-timeout", "60", "--python-hang"], env, 5)
    check(code is None and secs < 15, f"killed at the time limit after {secs:.0f} s")
    check(len(left) == 2 and all("selftest_harness.py" in c for c in left.values()),
          f"the Python peer and its child were found and killed ({len(left)} found)")
    check(not session_members_named("selftest_harness"), "none of them still runs")
    return bad


def session_members_named(word):
    found = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read().decode(errors="replace")
            with open(f"/proc/{entry}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if word in cmd and state != "Z" and int(entry) != os.getpid():
            found.append(int(entry))
    return found


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="bench/run", description="Build and run multiproc's benchmarks beside their peers.")
    p.add_argument("names", nargs="*", help="benchmarks to run (default: all): process pipe queue ...")
    p.add_argument("--wine", action="store_true",
                   help="also run the Windows build of the named benchmarks under Wine")
    p.add_argument("--wine-only", action="store_true", help="run only the Windows build under Wine")
    p.add_argument("--charts", action="store_true",
                   help="only draw the charts from the latest results file")
    p.add_argument("--no-charts", action="store_true", help="do not draw charts after the run")
    p.add_argument("--self-test", action="store_true",
                   help="check the harness's time bounds and failure lines (about 30 s)")
    p.add_argument("--rounds", type=int, default=7, help="rounds per case (default 7; 5 or more "
                   "for a verdict)")
    p.add_argument("--timeout", type=int, default=900,
                   help="seconds a benchmark program may run (default 900)")
    p.add_argument("--peer-timeout", type=int, default=120,
                   help="seconds one peer's round may take (default 120)")
    p.add_argument("--results-dir", default=os.path.join(ROOT, "build", "bench"),
                   help="where results-<date>.json and results-latest.json go (default build/bench)")
    p.add_argument("--charts-dir", default=os.path.join(ROOT, "docs", "bench"),
                   help="where the charts go (default docs/bench)")
    return p.parse_args(argv)


def draw_charts(results_file, charts_dir):
    rc = subprocess.call([PYTHON, os.path.join(ROOT, "bench", "chart.py"), results_file,
                          "--out", charts_dir])
    if rc != 0:
        log("bench/run: drawing the charts failed (is python3-matplotlib installed?)")
    return rc == 0


def main(argv):
    args = parse_args(argv)
    latest = os.path.join(args.results_dir, "results-latest.json")
    if args.charts:
        if not os.path.exists(latest):
            log(f"bench/run: no {latest} yet: run bench/run first")
            return 1
        return 0 if draw_charts(latest, args.charts_dir) else 1

    native, wine = not args.wine_only, args.wine or args.wine_only
    bench_src = os.path.join(ROOT, "bench")
    if args.self_test:
        build = os.path.join(ROOT, "build", "bench")
        if not cmake_build(bench_src, build, [], "build.log"):
            return 1
        bad = self_test(build)
        log(f"self-test: {'all checks passed' if not bad else f'{bad} check(s) failed'}")
        return 1 if bad else 0
    todo = []  # (name, platform, argv, env)
    if native:
        build = os.path.join(ROOT, "build", "bench")
        if not cmake_build(bench_src, build, [], "build.log"):
            return 1
        have = programs_in(build)
        for n in args.names or have:
            if n not in have:
                log(f"bench/run: no benchmark named {n!r} (have: {' '.join(have)})")
                return 2
            todo.append((n, "linux", [os.path.join(build, "bench_" + n)], dict(os.environ)))
    env_w = wine_env()
    if wine:
        deps = os.path.join(ROOT, "build", "deps-mingw", "install")
        if not os.path.isdir(deps):
            log(f"bench/run: {deps} is missing: run ./scripts/dev test once (it builds the "
                "Windows leg's dependencies), then bench/run --wine again")
            return 1
        build_w = os.path.join(ROOT, "build", "bench-mingw")
        if not cmake_build(bench_src, build_w,
                           ["-DCMAKE_TOOLCHAIN_FILE=" + os.path.join(ROOT, "cmake", "mingw-w64.cmake"),
                            "-DCMAKE_PREFIX_PATH=" + deps], "build.log"):
            return 1
        have_w = programs_in(build_w, ".exe")
        for n in args.names or have_w:
            if n in have_w:
                todo.append((n, "wine", ["wine", os.path.join(build_w, f"bench_{n}.exe")], env_w))
            elif args.names:
                log(f"bench/run: bench_{n} has no Windows build (see MP_BENCH_WINDOWS in "
                    "bench/CMakeLists.txt); not run under Wine")

    now = datetime.datetime.now().astimezone()
    results = {
        "schema": 1,
        "date": now.isoformat(timespec="seconds"),
        "command": ["bench/run"] + argv,
        "rounds": args.rounds, "timeout_s": args.timeout, "peer_timeout_s": args.peer_timeout,
        "machine": machine_facts(wine), "git": git_facts(),
        "wine_note": WINE_NOTE if wine else None,
        "benchmarks": [], "measurements": [], "targets": [], "failures": [], "notes": [],
    }
    scratch = os.path.join(args.results_dir, "jsonl")
    os.makedirs(scratch, exist_ok=True)
    signal.signal(signal.SIGTERM, interrupted)
    if wine:
        wine_start(env_w)
    try:
        for name, plat, cmd, env in todo:
            run_one(name, plat, cmd, env, args, scratch, results)
    except KeyboardInterrupt:
        log("bench/run: interrupted; the results so far are written")
        results["interrupted"] = True
    finally:
        if wine:
            wine_stop(env_w)
    results["machine"]["loadavg_end"] = list(os.getloadavg())

    stamp = now.strftime("%Y-%m-%dT%H-%M-%S")
    path = os.path.join(args.results_dir, f"results-{stamp}.json")
    with open(path, "w") as f:
        json.dump(results, f, indent=1)
    tmp = latest + ".tmp"
    shutil.copyfile(path, tmp)
    os.replace(tmp, latest)

    log("")
    log(f"== summary ({len(results['measurements'])} measurements; results: {path})")
    for t in results["targets"]:
        log(t["line"])
    for fl in results["failures"]:
        where = " / ".join(x for x in (fl.get("case"), fl.get("peer")) if x)
        log(f"failure {fl['benchmark']} ({fl.get('platform')}){': ' + where if where else ''}: "
            f"{fl['reason']}")
    if wine:
        log(f"note: the Wine figures are information only ({WINE_NOTE})")
    if not args.no_charts:
        draw_charts(latest, args.charts_dir)
    return 1 if results["failures"] else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
