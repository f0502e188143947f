"""Benchmark: how low can a scan's CPU go, gathering the evidence it gathers? Same run, same load as scan_cost.

Issue 16 sets targets as ratios to `ps -eo ...` + `ss -tanp`. ps and ss read less than the agent: no
environ, cgroup, cwd, executable or namespace of each process, no hidden-process probe. This bench measures,
in one interleaved run and beside the same sleeping processes and loopback connections as scan_cost.py:

  ps+ss          the reference
  C floor        evidence_floor.c: exactly the files and links the agent reads, the socket tables and the
                 PID probe, in C, with no parsing and no judgement (the least any program can cost)
  Python floor   the same reads from Python (os.open/os.read/os.readlink), still without parsing
  start-up       `python -c "import audit_agent.cli, audit_agent.evaluate"`: the interpreter and the modules
                 a scan needs, before it reads anything
  agent          audit-agent scan --window 0 --quiet --json OUT, as scan_cost.py runs it

and prints each as a ratio to ps+ss. The C floor's ratio is what no implementation of these checks can go
under on this host; C floor + start-up is the least a Python agent can cost.

    python bench/evidence_floor.py [--repeat 7] [--counts 0,2000,8000] [--connections 5000]
"""
from __future__ import annotations

import argparse
import compileall
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import REPO, Load, agent_command, build_native, measure, median, visible_processes  # noqa: E402

PS = ["ps", "-eo", "pid,ppid,user,pcpu,rss,nlwp,lstart,args"]
SS = ["ss", "-tanp"]
PYTHON_FLOOR = r'''
import os
def slurp(name, where):
    try:
        fd = os.open(name, os.O_RDONLY, dir_fd=where)
    except OSError:
        return
    try:
        while os.read(fd, 65536):
            pass
    except OSError:
        pass
    finally:
        os.close(fd)
def link(name, where):
    try:
        os.readlink(name, dir_fd=where)
    except OSError:
        pass
for entry in os.listdir(b"/proc"):
    if not entry.isdigit():
        continue
    base = b"/proc/" + entry + b"/"
    try:
        where = os.open(base, os.O_PATH | os.O_DIRECTORY)
    except OSError:
        continue
    for name in (b"stat", b"status", b"cmdline"):
        slurp(name, where)
    link(b"exe", where); link(b"cwd", where)
    slurp(b"cgroup", where); slurp(b"environ", where)
    try:
        for fd in os.listdir(base + b"fd/"):
            try:
                os.readlink(base + b"fd/" + fd)
            except OSError:
                pass
    except OSError:
        pass
    link(b"ns/net", where)
    try:
        os.stat(b"exe", dir_fd=where)
    except OSError:
        pass
    os.close(where)
net = os.open("/proc/net", os.O_PATH | os.O_DIRECTORY)
for table in ("tcp", "tcp6", "udp", "udp6"):
    slurp(table, net)
with open("/proc/sys/kernel/pid_max") as handle:
    pid_max = int(handle.read())
for pid in range(1, pid_max + 1):
    try:
        os.kill(pid, 0)
    except OSError:
        pass
'''


def build_floor(folder: Path) -> list[str] | None:
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        return None
    binary = folder / "evidence-floor"
    source = Path(__file__).resolve().parent / "evidence_floor.c"
    if subprocess.run([compiler, "-O2", "-o", str(binary), str(source)]).returncode != 0:
        return None
    return [str(binary)]


def run(counts: list[int], connections: int, repeat: int) -> int:
    compileall.compile_dir(str(REPO / "audit_agent"), quiet=1)     # as installed: byte-compiled
    print(f"process reader: {'C half (_procread)' if build_native(REPO) else 'Python half'}")
    env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    env["NO_COLOR"] = "1"
    env["AUDIT_AGENT_STATE_DIR"] = tempfile.mkdtemp(prefix="audit-bench-state-")
    if agent_command()[0] == sys.executable:
        env["PYTHONPATH"] = str(REPO)
    work = Path(tempfile.mkdtemp(prefix="audit-bench-floor-"))
    out = work / "report.json"
    commands = {
        "ps+ss": None,
        "C floor": build_floor(work),
        "Python floor": [sys.executable, "-c", PYTHON_FLOOR],
        "start-up": [sys.executable, "-c", "import audit_agent.cli, audit_agent.evaluate"],
        "agent": [*agent_command(), "scan", "--window", "0", "--quiet", "--fail-on", "never", "--json", str(out)],
    }
    if commands["C floor"] is None:
        print("no C compiler: the C floor is left out", file=sys.stderr)
        del commands["C floor"]
    names = list(commands)
    with Load() as load:
        load.connections(connections)
        print(f"{connections} loopback connections; medians of {repeat} interleaved runs; CPU = user + system")
        print(f"{'extra':>6} {'procs':>6} " + " ".join(f"{name:>19}" for name in names))
        started = 0
        try:
            for count in counts:
                load.sleepers(count - started)
                started = count
                for name in names[1:]:
                    measure(commands[name], env, cwd=str(work))      # warm caches and the agent's state
                costs: dict[str, list[float]] = {name: [] for name in names}
                kernel: dict[str, list[float]] = {name: [] for name in names}
                for _ in range(repeat):
                    ps, ss = measure(PS, capture=True), measure(SS, capture=True)
                    costs["ps+ss"].append(ps.cpu + ss.cpu)
                    kernel["ps+ss"].append(ps.system + ss.system)
                    for name in names[1:]:
                        cost = measure(commands[name], env, cwd=str(work))
                        costs[name].append(cost.cpu)
                        kernel[name].append(cost.system)
                shell = median(costs["ps+ss"])
                cells = []
                for name in names:
                    cpu = median(costs[name])
                    cells.append(f"{cpu * 1000:>6.0f}ms {cpu / shell:>4.2f}x k{median(kernel[name]) * 1000:>4.0f}")
                print(f"{count:>6} {visible_processes():>6} " + " ".join(f"{cell:>19}" for cell in cells))
        finally:
            shutil.rmtree(work, ignore_errors=True)
            shutil.rmtree(env["AUDIT_AGENT_STATE_DIR"], ignore_errors=True)
    print("each cell: CPU, its ratio to ps+ss, and kNNN the part of it spent in the kernel (ms)")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--counts", default="0,2000,8000", help="extra sleeping processes, cumulative steps")
    parser.add_argument("--connections", type=int, default=5000, help="loopback connections (two sockets each)")
    args = parser.parse_args()
    return run([int(c) for c in args.counts.split(",")], args.connections, args.repeat)


if __name__ == "__main__":
    sys.exit(main())
