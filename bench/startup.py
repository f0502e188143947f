"""Benchmark 4: start-up cost, and which heavy modules each command imports.

    .venv/bin/python bench/startup.py [--repeat 10]

Measures `audit-agent --version` and `audit-agent scan --window 0 --quiet --json OUT`
(wall and CPU, median), then runs the CLI in-process for `--version`, a quiet
`scan --window 0 --json`, a terminal `scan --window 0` (summary via Rich) and a
`scan --window 0 --html` and lists which heavy modules (jinja2, requests, pynvml,
rich, yara, yaml, psutil) each one imported. Target (issue 6): Jinja2,
requests and NVML only where used.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import agent_command, measure, median  # noqa: E402

HEAVY = ("jinja2", "requests", "urllib3", "pynvml", "rich", "yara", "yaml", "psutil", "markdown_it", "pygments")
PROBE = """
import json, sys
from audit_agent.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
heavy = %r
print(json.dumps({"code": code, "modules": sorted(m for m in heavy if m in sys.modules)}), file=sys.__stderr__)
""" % (HEAVY,)


def imported(args: list[str]) -> tuple[object, list[str]]:
    result = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True,
                            stdin=subprocess.DEVNULL, env={**os.environ, "NO_COLOR": "1"})
    line = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else "{}"
    try:
        data = json.loads(line)
    except json.JSONDecodeError:
        return f"failed: {line[:200]}", []
    return data.get("code"), data.get("modules", [])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()
    out = Path(tempfile.mkdtemp(prefix="audit-bench-startup-"))
    try:
        python = measure([sys.executable, "-c", "pass"])
        runs = {
            "python -c pass (floor)": [sys.executable, "-c", "pass"],
            "audit-agent --version": [*agent_command(), "--version"],
            "audit-agent scan --window 0 --quiet --json": [*agent_command(), "scan", "--window", "0", "--quiet",
                                                           "--fail-on", "never", "--json", str(out / "r.json")],
        }
        del python
        print(f"{'command':<46} {'wall':>8} {'cpu':>8} {'peak rss':>9}")
        for label, command in runs.items():
            costs = [measure(command) for _ in range(args.repeat)]
            print(f"{label:<46} {median([c.wall for c in costs]) * 1000:>6.0f}ms {median([c.cpu for c in costs]) * 1000:>6.0f}ms "
                  f"{max(c.max_rss_kb for c in costs) / 1024:>7.1f}MB")
        print()
        probes = {
            "--version": ["--version"],
            "scan --window 0 --quiet --json": ["scan", "--window", "0", "--quiet", "--fail-on", "never",
                                               "--json", str(out / "a.json")],
            "scan --window 0 (terminal summary)": ["scan", "--window", "0", "--fail-on", "never"],
            "scan --window 0 --quiet --html": ["scan", "--window", "0", "--quiet", "--fail-on", "never",
                                               "--html", str(out / "a.html")],
        }
        problems = 0
        for label, probe in probes.items():
            code, modules = imported(probe)
            unexpected = [m for m in ("jinja2", "requests", "pynvml") if m in modules
                          and not (m == "jinja2" and "--html" in probe)]
            problems += bool(unexpected)
            print(f"{label:<36} exit {code!s:<4} imports {', '.join(modules) or '-'}"
                  f"{'   UNEXPECTED: ' + ', '.join(unexpected) if unexpected else ''}")
        print("heavy imports only where used" if not problems else f"{problems} command(s) import what they do not use")
    finally:
        for path in out.iterdir():
            path.unlink()
        out.rmdir()
    return 0


if __name__ == "__main__":
    sys.exit(main())
