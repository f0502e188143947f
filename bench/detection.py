"""Detection benchmark: replay a labelled corpus of real command lines through the evaluator.

Every entry of bench/corpus/*.yaml (miners gathered from miner docs, threat reports
and issue trackers; heavy legitimate research workloads) becomes a one-process
Snapshot (ProcessInfo + its Connections + the MinerConfig it names), evaluated
with the default rule pack over a long window (60 s) so the load heuristics apply.

  miners  (expect: high)   detected when a finding about that pid is high or critical  -> recall
  benign  (expect: quiet)  flagged when any finding of its report is high or critical  -> false-positive rate
                           (findings below high only ask for review; their rate is shown too)

Prints figures per category, the overall recall and false-positive rate against
the targets (recall >= 98 %, benign flagged high <= 1 %), and every miss and
false positive by id. Exit status 0 always: it is a benchmark, not a test.

    .venv/bin/python bench/detection.py [--corpus DIR] [--rules DIR] [--config FILE] [--window 60] [--verbose]

Entry format (a file holds a list of entries, or a mapping with `entries:`):

    - id: xmrig-readme-basic
      category: cpu-miner
      source: https://xmrig.com/docs/miner/command-line-options
      process: {name, exe, cmdline: [..], username, cpu_percent, allowed_cpus, num_threads, terminal}
      connections: [{remote_address, remote_port, state}]
      config: {urls: [..], users: [..]}
      environ: {KEY: value}                        (family environment keys the process sets)
      family_config: {path, text, via}             (a coin / farming config where the software reads it;
                                                    via: home, cwd, exe_dir, env, arg; parsed like the collector)
      artefacts: [{family, kind, directory, count, bytes}]   (what the artefact search would report)
      expect: high | quiet
"""
from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import yaml  # noqa: E402

from audit_agent.evaluate import evaluate  # noqa: E402
from audit_agent.model import (ArtefactGroup, ConfigReader, Connection, Coverage, CoverageStatus,  # noqa: E402
                               FamilyConfig, Finding, HostInfo, MinerConfig, ProcessInfo, Severity, Snapshot)
from audit_agent.policy import Policy, load_policy  # noqa: E402
from audit_agent.rules.compiler import CompiledRules  # noqa: E402
from audit_agent.rules.family_match import config_facts  # noqa: E402
from audit_agent.rules.loader import load_pack  # noqa: E402

COLLECTED_AT = 1_750_000_000.0
PID = 4242
TARGET_RECALL = 0.98
TARGET_FP_RATE = 0.01


@dataclass
class Outcome:
    id: str
    category: str
    expect: str                      # high | quiet
    flagged: bool                    # a high finding (about the pid, for miners)
    review: bool                     # some finding at low..medium, none high
    severity: str
    rule_ids: list[str] = field(default_factory=list)
    title: str = ""


# ---------------------------------------------------------------- corpus

def load_corpus(directory: Path) -> tuple[list[tuple[str, dict]], list[str]]:
    """(file stem, entry) for every entry; plus the problems found (bad files, malformed entries)."""
    entries: list[tuple[str, dict]] = []
    problems: list[str] = []
    for path in sorted(directory.glob("*.yaml")):
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            problems.append(f"{path.name}: cannot read: {exc}")
            continue
        items = data.get("entries") if isinstance(data, dict) else data
        if not isinstance(items, list):
            problems.append(f"{path.name}: expected a list of entries (or `entries:`)")
            continue
        for index, item in enumerate(items):
            problem = entry_problem(item)
            if problem:
                problems.append(f"{path.name}[{index}] {item.get('id', '?') if isinstance(item, dict) else '?'}: "
                                f"{problem}")
                continue
            entries.append((path.stem, item))
    return entries, problems


def entry_problem(item: Any) -> str:
    if not isinstance(item, dict):
        return "not a mapping"
    if not isinstance(item.get("id"), str):
        return "no id"
    if item.get("expect") not in ("high", "quiet"):
        return "expect must be high or quiet"
    process = item.get("process")
    if not isinstance(process, dict) or not isinstance(process.get("cmdline", []), list):
        return "process must be a mapping with a cmdline list"
    return ""


# ---------------------------------------------------------------- entry -> snapshot

def snapshot_of(item: dict, window: float) -> Snapshot:
    raw = item["process"]
    cmdline = [str(arg) for arg in raw.get("cmdline") or []]
    exe = str(raw.get("exe") or "")
    first = cmdline[0] if cmdline else ""
    name = str(raw.get("name") or (exe or first).rsplit("/", 1)[-1])[:15]
    allowed = _int(raw.get("allowed_cpus"))
    process = ProcessInfo(
        pid=PID, ppid=1, name=name, exe=exe, cmdline=cmdline, username=str(raw.get("username") or "user"),
        cwd=str(raw.get("cwd") or ""), create_time=COLLECTED_AT - 3600, status="running",
        num_threads=_int(raw.get("num_threads")), cpu_percent=_float(raw.get("cpu_percent")),
        cpu_seconds=None, allowed_cpus=allowed, terminal=str(raw.get("terminal") or ""),
        cgroup=str(raw.get("cgroup") or ""), container_id=str(raw.get("container_id") or ""),
        slurm_job_id=str(raw.get("slurm_job_id") or ""), exe_deleted=bool(raw.get("exe_deleted", False)))
    connections = [
        Connection(pid=PID, protocol=str(conn.get("protocol") or "tcp"), local_address="10.20.30.40",
                   local_port=45000 + index, remote_address=str(conn.get("remote_address") or ""),
                   remote_port=int(conn.get("remote_port") or 0), state=str(conn.get("state") or "ESTABLISHED"))
        for index, conn in enumerate(item.get("connections") or []) if isinstance(conn, dict)]
    configs = []
    config = item.get("config")
    if isinstance(config, dict) and (config.get("urls") or config.get("users")):
        home = process.cwd or f"/home/{process.username}"
        configs.append(MinerConfig(path=str(config.get("path") or f"{home}/config.json"), pids=[PID],
                                   urls=[str(u) for u in config.get("urls") or []],
                                   users=[str(u) for u in config.get("users") or []],
                                   keys=[str(k) for k in config.get("keys") or []],
                                   algorithms=[str(a) for a in config.get("algorithms") or []]))
    process.environ = {str(k): str(v) for k, v in (raw.get("environ") or {}).items()}
    threads = max(allowed or 0, 8)
    return Snapshot(agent_version="bench", collected_at=COLLECTED_AT, window_seconds=window,
                    host=HostInfo(hostname="bench-node", os="Linux", cpu_threads=threads, cpu_cores=threads),
                    processes=[process], connections=connections, configs=configs,
                    family_configs=family_configs(item.get("family_config")),
                    artefacts=[ArtefactGroup(family=str(a["family"]), kind=str(a.get("kind", "")),
                                             directory=str(a["directory"]), count=int(a.get("count", 1)),
                                             total_bytes=int(a.get("bytes", 0)), pids=[PID], found_via="open")
                               for a in item.get("artefacts") or [] if isinstance(a, dict)],
                    coverage=[Coverage("processes", CoverageStatus.OK, inspected=1),
                              Coverage("network", CoverageStatus.OK, inspected=len(connections))])


@lru_cache(maxsize=1)
def default_families() -> list:
    return load_pack().families


def family_configs(raw: Any) -> list[FamilyConfig]:
    """The family config an entry quotes, read by every family spec whose file name matches, as the collector would."""
    if not isinstance(raw, dict) or not isinstance(raw.get("text"), str):
        return []
    path, text = str(raw.get("path") or "config"), raw["text"]
    found = []
    for family in default_families():
        for spec in family.configs:
            if not any(t.rsplit("/", 1)[-1] == path.rsplit("/", 1)[-1] for t in spec.paths):
                continue
            facts = config_facts(spec, text)
            if facts is not None:
                found.append(FamilyConfig(path=path, family=family.id, keys=facts.keys, urls=facts.urls,
                                          logins=facts.logins, dirs=facts.dirs, network=facts.network,
                                          readers=[ConfigReader(PID, str(raw.get("via") or "cwd"))]))
                break
    return found


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


# ---------------------------------------------------------------- replay

def replay(stem: str, item: dict, rules: CompiledRules, policy: Policy, window: float) -> Outcome:
    report = evaluate(snapshot_of(item, window), rules, policy, now=COLLECTED_AT)
    expect = item["expect"]
    high = [f for f in report.findings if f.severity.rank >= Severity.HIGH.rank]
    if expect == "high":
        high = [f for f in high if f.subject.pid == PID]
    worst = max(report.findings, key=lambda f: (f.severity.rank, f.confidence), default=None)
    shown: Finding | None = high[0] if high else worst
    return Outcome(id=str(item["id"]), category=str(item.get("category") or stem), expect=expect,
                   flagged=bool(high), review=bool(report.findings) and not high
                   and any(f.severity.rank >= Severity.LOW.rank for f in report.findings),
                   severity=shown.severity.value if shown else "none",
                   rule_ids=list(shown.rule_ids) if shown else [], title=shown.title if shown else "")


def percent(part: int, whole: int) -> str:
    return f"{100.0 * part / whole:5.1f}%" if whole else "   n/a"


def print_report(outcomes: list[Outcome], problems: list[str], rules: CompiledRules, window: float,
                 files: int, verbose: bool) -> None:
    print(f"detection benchmark: {len(outcomes)} entries from {files} corpus file(s); rule pack "
          f"{rules.pack.name} {rules.pack.version}; window {window:g} s")
    by_category: dict[tuple[str, str], list[Outcome]] = defaultdict(list)
    for outcome in outcomes:
        by_category[("miner" if outcome.expect == "high" else "benign", outcome.category)].append(outcome)
    print(f"\n{'kind':<7} {'category':<28} {'entries':>7} {'high':>5} {'rate':>7}  {'review':>6}  figure")
    for (kind, category), items in sorted(by_category.items()):
        flagged = sum(o.flagged for o in items)
        review = sum(o.review for o in items)
        figure = "recall" if kind == "miner" else "flagged high (false positives)"
        print(f"{kind:<7} {category[:28]:<28} {len(items):>7} {flagged:>5} {percent(flagged, len(items)):>7}  "
              f"{review:>6}  {figure}")
    miners = [o for o in outcomes if o.expect == "high"]
    benign = [o for o in outcomes if o.expect == "quiet"]
    found = sum(o.flagged for o in miners)
    false_positives = sum(o.flagged for o in benign)
    recall = found / len(miners) if miners else 0.0
    fp_rate = false_positives / len(benign) if benign else 0.0
    print(f"\noverall: miner recall {found}/{len(miners)} = {percent(found, len(miners)).strip()} "
          f"(target >= {TARGET_RECALL:.0%}: {'met' if miners and recall >= TARGET_RECALL else 'NOT met'}); "
          f"benign flagged high {false_positives}/{len(benign)} = {percent(false_positives, len(benign)).strip()} "
          f"(target <= {TARGET_FP_RATE:.0%}: {'met' if benign and fp_rate <= TARGET_FP_RATE else 'NOT met'}); "
          f"benign asked for review {sum(o.review for o in benign)}/{len(benign)}")
    misses = [o for o in miners if not o.flagged]
    print(f"\nmisses ({len(misses)}):")
    for o in misses:
        print(f"  {o.id} [{o.category}]: best {o.severity}" + (f" {o.title} ({', '.join(o.rule_ids)})" if o.rule_ids else ""))
    flagged = [o for o in benign if o.flagged]
    print(f"\nfalse positives ({len(flagged)}):")
    for o in flagged:
        print(f"  {o.id} [{o.category}]: {o.severity} {o.title} ({', '.join(o.rule_ids)})")
    if verbose:
        reviewed = [o for o in benign if o.review]
        print(f"\nbenign asked for review ({len(reviewed)}):")
        for o in reviewed:
            print(f"  {o.id} [{o.category}]: {o.severity} {o.title} ({', '.join(o.rule_ids)})")
    if problems:
        print(f"\ncorpus problems ({len(problems)}), entries skipped:")
        for problem in problems:
            print(f"  {problem}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default=str(REPO / "bench" / "corpus"), help="directory of corpus *.yaml files")
    parser.add_argument("--rules", default=None, help="rule pack directory (default: the shipped pack)")
    parser.add_argument("--config", default=None, help="agent config (thresholds, allowlist)")
    parser.add_argument("--window", type=float, default=60.0, help="sampling window the snapshots claim (s)")
    parser.add_argument("--verbose", action="store_true", help="also list benign entries that ask for review")
    args = parser.parse_args(argv)
    corpus = Path(args.corpus)
    entries, problems = load_corpus(corpus) if corpus.is_dir() else ([], [f"{corpus}: no such directory"])
    rules = CompiledRules(load_pack(args.rules))
    policy = load_policy(args.config)
    outcomes = []
    for stem, item in entries:
        try:
            outcomes.append(replay(stem, item, rules, policy, args.window))
        except Exception as exc:       # one broken entry must not hide the figures of the others
            problems.append(f"{item.get('id')}: evaluation failed: {type(exc).__name__}: {exc}")
    files = len(list(corpus.glob("*.yaml"))) if corpus.is_dir() else 0
    print_report(outcomes, problems, rules, args.window, files, args.verbose)
    return 0


if __name__ == "__main__":
    sys.exit(main())
