"""`audit-agent demo`: evaluate the demo snapshots in seeds/ and write their reports.

A newcomer sees the product without a miner on hand. Each seed is evaluated
with the default rule pack and seeds/config.yaml (profile, allowlist and the
filings registry), or with `<name>.config.yaml` when a seed has its own.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from audit_agent.model import AuditReport
from audit_agent.output import read_snapshot, write_atomic
from audit_agent.paths import data_dir

SNAPSHOT_SUFFIX = ".snapshot.json"
OUTPUTS = (("html", ".html"), ("markdown", ".md"), ("json", ".json"))


@dataclass
class Seed:
    name: str
    snapshot: Path
    config: Path | None


def seeds(directory: Path | None = None) -> list[Seed]:
    directory = directory or data_dir("seeds")
    found = []
    for path in sorted(directory.glob(f"*{SNAPSHOT_SUFFIX}")):
        name = path.name[: -len(SNAPSHOT_SUFFIX)]
        own, shared = directory / f"{name}.config.yaml", directory / "config.yaml"
        found.append(Seed(name, path, own if own.is_file() else shared if shared.is_file() else None))
    return found


def evaluate_seed(seed: Seed) -> AuditReport:
    from audit_agent.evaluate import evaluate
    from audit_agent.pipeline import load_inputs

    inputs = load_inputs(None, str(seed.config) if seed.config else None)
    snapshot = read_snapshot(seed.snapshot)
    # "now" is the end of the sampling window, so filings are judged on the audit's own date
    # and the demo reports come out the same on every run.
    now = snapshot.collected_at + snapshot.window_seconds
    return evaluate(snapshot, inputs.rules, inputs.policy, inputs.filings, now=now)


def run_demo(out_dir: Path, lang: str = "en") -> Iterator[str]:
    from audit_agent.render import RenderOptions, render

    out_dir.mkdir(parents=True, exist_ok=True)
    options = RenderOptions(lang=lang)
    for seed in seeds():
        report = evaluate_seed(seed)
        suffix = "" if lang == "en" else f".{lang}"
        for fmt, extension in OUTPUTS:
            path = out_dir / f"{seed.name}{suffix}{extension}"
            write_atomic(path, render(fmt, report, options))
            yield f"{path}  ({report.verdict.value}, {len(report.open_findings)} counted findings)"
