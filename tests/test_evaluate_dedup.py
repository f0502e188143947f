"""Processes that look alike (name, executable, command line, environment) are judged once when the judgement
is silent (detect.each_process): the findings must be exactly those of judging every process on its own."""
from __future__ import annotations

import pytest

from audit_agent import detect
from audit_agent.demo import evaluate_seed, seeds
from audit_agent.detect import stealth
from audit_agent.evaluate import evaluate
from audit_agent.model import ConfigReader, FamilyConfig, PersistenceEntry, ProcessInfo, ProgramIdentity, Snapshot
from tests.factories import conn, default_inputs, snapshot

COLLECTED = 1_750_000_000.0
SLEEPER = "/srv/lab/bin/sleeper"
XMRIG = ["/home/bob/xmrig", "-o", "pool.supportxmr.com:3333", "-u",
         "44AFFq5kSiGBoZ4NMDwYtN18obc8AemS33DBLWs3H7otXft3XjrpDtQGv7SqSsaBYBb98uNbr2VBBEt7f2wfn3RVGQBEP3A"]


def process(pid: int, argv: list[str], *, name: str | None = None, exe: str | None = None, ppid: int = 500,
            **extra: object) -> ProcessInfo:
    first = argv[0] if argv else ""
    return ProcessInfo(pid=pid, ppid=ppid, name=name if name is not None else first.rsplit("/", 1)[-1][:15],
                       exe=exe if exe is not None else first, cmdline=list(argv), username="bob",
                       create_time=COLLECTED - 7200, cpu_percent=extra.pop("cpu", 0.0), allowed_cpus=8,
                       **extra)  # type: ignore[arg-type]


def crowd() -> Snapshot:
    """Many identical processes, and a few that differ from them only in what is not part of their look
    (pid, parent, CPU, huge pages, hidden, deleted, libraries, connections, program facts), each placed
    after a silent look-alike so that a key missing what it differs in would skip it."""
    procs: list[ProcessInfo] = [process(500, ["/bin/bash"], ppid=1, environ={"ALEPHIUM_HOME": "/data/alephium"})]
    pid = 1000

    def add(count: int, argv: list[str], **extra: object) -> None:
        nonlocal pid
        for _ in range(count):
            procs.append(process(pid, argv, **dict(extra)))
            pid += 1

    add(300, [SLEEPER], environ={"HOME": "/root"})
    add(1, [SLEEPER], environ={"HOME": "/root"}, hidden=True)
    add(1, [SLEEPER], environ={"HOME": "/root"}, exe_deleted=True)
    add(2, [SLEEPER], environ={"HOME": "/root"}, anon_hugepages_bytes=2 << 30)               # idle: quiet
    add(1, [SLEEPER], environ={"HOME": "/root"}, anon_hugepages_bytes=2 << 30, cpu=95.0)     # busy: speaks
    add(3, [SLEEPER], environ={"HOME": "/root"}, cpu=100.0, lifetime_cpu_seconds=7000.0)     # busy all its life
    add(2, [SLEEPER], environ={"HOME": "/root"}, cmdline_bytes=70000)
    add(50, [], name="kworker/0:1", exe="", ppid=2)                                          # real kernel threads
    add(2, [], name="kworker/0:1", exe="", ppid=4242)                                        # an imitation
    add(40, XMRIG)
    add(40, ["/bin/bash"], environ={"ALEPHIUM_HOME": "/data/alephium"})                      # inherited from 500
    add(2, ["/bin/bash"], ppid=1, environ={"ALEPHIUM_HOME": "/data/alephium"})               # set by itself
    add(20, ["python3", "serve.py"], exe="/usr/bin/uwsgi", libraries=["libpython3.11.so.1.0"])   # embeds python
    add(2, ["python3", "serve.py"], exe="/usr/bin/uwsgi")                                    # a disguise
    add(20, ["bitcoind", "-regtest", "-daemon"], exe="/opt/bitcoin/bin/bitcoind")
    add(1, ["bitcoin-cli", "-regtest", "generatetoaddress", "1", "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080"],
        exe="/opt/bitcoin/bin/bitcoin-cli")
    add(30, ["/tmp/.x/kswapd0"], environ={"HOME": "/root"})
    add(2, ["/tmp/.x/kswapd0"], environ={"HOME": "/root", "LD_PRELOAD": "/tmp/.x/libhide.so"})
    add(10, ["/usr/bin/python3", "train.py"], exe="/usr/bin/python3")
    add(5, ["/srv/chia/chia_harvester"])                     # no config read: nothing research says
    testnet = FamilyConfig(path="/home/bob/.chia/mainnet/config/config.yaml", family="CHIA", network="testnet11",
                           readers=[ConfigReader(pid=pid, via="home")])
    add(1, ["/srv/chia/chia_harvester"])                     # its config selects a test network
    facts = ProgramIdentity(pid=pid - 1, claimed="python3", exe="/usr/bin/python3", on_path="/usr/bin/python3.11",
                            same_as_path=False, package="", package_db="dpkg")
    connections = [conn(1100, "10.9.8.7", 3333), conn(1101, "10.9.8.7", 3333), conn(pid - 5, "203.0.113.9", 3333)]
    cron = PersistenceEntry(path="/var/spool/cron/crontabs/bob", kind="cron", line=1,
                            text="* * * * * /tmp/.x/kswapd0 >/dev/null 2>&1", user="bob")
    return snapshot(procs, connections, collected_at=COLLECTED, identities=[facts], persistence=[cron],
                    family_configs=[testnet])


def reports(snap: Snapshot, monkeypatch: pytest.MonkeyPatch, config: str | None = None) -> tuple[dict, dict]:
    inputs = default_inputs(config)
    judged_once = evaluate(snap, inputs.rules, inputs.policy, inputs.filings, now=COLLECTED).to_dict()
    monkeypatch.setattr(detect, "JUDGE_ONCE", False)
    each = evaluate(snap, inputs.rules, inputs.policy, inputs.filings, now=COLLECTED).to_dict()
    monkeypatch.setattr(detect, "JUDGE_ONCE", True)
    return judged_once, each


def assert_same(judged_once: dict, each: dict) -> None:
    assert len(judged_once["findings"]) == len(each["findings"])
    for fast, reference in zip(judged_once["findings"], each["findings"]):
        for key in reference:       # field by field, for a readable failure
            assert fast[key] == reference[key], (reference["subject"], key)
    assert judged_once == each


def test_a_crowd_of_look_alikes_gives_the_findings_of_judging_each(monkeypatch):
    judged_once, each = reports(crowd(), monkeypatch)
    assert_same(judged_once, each)
    rules = {rule for finding in each["findings"] for rule in finding["rule_ids"]}
    # the odd ones out were each found (a key that missed what they differ in would have skipped them)
    assert {"AA-STEALTH-007", "AA-STEALTH-001", "AA-TUNE-001", "AA-STEALTH-005", "AA-STEALTH-006",
            "AA-IDENT-001", "AA-PERSIST-005", "AA-RES-001"} <= rules
    pids = {finding["subject"]["pid"] for finding in each["findings"]}
    assert 1000 not in pids                             # a plain sleeper stays quiet
    assert sum(1 for finding in each["findings"] if finding["subject"]["name"] == "chia_harvester"
               and any(rule.startswith("AA-RES-") for rule in finding["rule_ids"])) == 1
    environ = [f for f in each["findings"] if any(e["field"] == "environ" for e in f["evidence"])]
    assert len(environ) == 3 + 2            # ALEPHIUM_HOME set by the parent and by two others; two LD_PRELOAD
    assert sum(1 for finding in each["findings"] if finding["subject"]["name"] == "kworker/0:1") == 2
    assert sum(1 for finding in each["findings"] if "AA-IDENT-001" in finding["rule_ids"]) == 2
    assert sum(1 for finding in each["findings"] if "XMRIG" in " ".join(finding["rule_ids"]).upper()
               or "xmrig" in finding["subject"]["exe"]) == 40


@pytest.mark.parametrize("seed", seeds(), ids=lambda seed: seed.name)
def test_the_demo_seeds_give_the_findings_of_judging_each(seed, monkeypatch):
    judged_once = evaluate_seed(seed).to_dict()
    monkeypatch.setattr(detect, "JUDGE_ONCE", False)
    each = evaluate_seed(seed).to_dict()
    assert_same({**judged_once, "generated_at": 0}, {**each, "generated_at": 0})


def test_identical_sleepers_are_judged_once(monkeypatch):
    calls: list[int] = []
    judge = stealth.process_signals

    def counted(proc: ProcessInfo, ctx: detect.Context) -> list[detect.Signal]:
        calls.append(proc.pid)
        return judge(proc, ctx)

    monkeypatch.setattr(stealth, "process_signals", counted)
    procs = [process(pid, [SLEEPER], environ={"HOME": "/root"}) for pid in range(1000, 1500)]
    procs.append(process(2000, [SLEEPER], environ={"HOME": "/root"}, hidden=True))
    inputs = default_inputs()
    evaluate(snapshot(procs, collected_at=COLLECTED), inputs.rules, inputs.policy, now=COLLECTED)
    assert calls == [1000, 2000]
