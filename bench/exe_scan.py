"""Benchmark 3: executable content scanning, agent vs `grep -c -a -F -f` vs the `yara` CLI, same files, same run.

Builds a corpus of real ELF executables and libraries (copied from /usr/bin,
/usr/lib, repeated as needed) up to --size (default 1 GB, each file <= the
scanner's 64 MB cap), reads it once to warm the page cache, then measures CPU
time (user+system via wait4, so threads count) of:

  agent  the agent's own scanner (audit_agent.collect.binaries: scan_target ->
         scan_file, with the default pack's signature strings), in a child process;
         a second pass in the same process shows the (dev, inode, size, mtime) cache;
         run twice: the built-in engine, and with yara-python (the `yara` extra) when
         it is installed, which is what the agent uses then
  grep   grep -c -a -F -f strings.txt FILE...    (the same strings)
  yara   yara -r rules.yar DIR                   (one YARA rule per string rule,
                                                  `N of them` = its min_matches)

Target (issue 6): agent at least as fast as yara, within 1.5x of grep, second scan near free.

    .venv/bin/python bench/exe_scan.py [--size-mb 1024] [--repeat 3] [--keep]
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import REPO, measure, median  # noqa: E402

sys.path.insert(0, str(REPO))
from audit_agent.collect.binaries import MAX_SCAN_BYTES  # noqa: E402
from audit_agent.pipeline import load_rules  # noqa: E402

SOURCES = ("/usr/bin", "/usr/sbin", "/usr/lib", "/usr/libexec", "/usr/local/bin")

AGENT_SCAN = r"""
import json, os, resource, sys, time
from audit_agent.collect import binaries
strings = json.load(open(sys.argv[1]))
encoded = [s.encode() for s in strings]
files = [line.rstrip("\n") for line in open(sys.argv[2])]
from audit_agent.rules.loader import load_pack
yara_rules = binaries.load_yara_rules(strings, load_pack().yara_sources) if sys.argv[3] == "yara" else None
if sys.argv[3] == "yara" and yara_rules is None:
    sys.exit("yara-python is not installed")
signature_id = (tuple(strings), id(yara_rules) if yara_rules is not None else None)
def one_pass():
    start = resource.getrusage(resource.RUSAGE_SELF)
    matched = 0
    for path in files:
        st = os.stat(path)
        target = binaries._Target(path=path, open_path=path, key=(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns),
                                  size=st.st_size)
        result = binaries.scan_target(target, signature_id, strings, encoded, yara_rules)
        matched += bool(result.matched)
    end = resource.getrusage(resource.RUSAGE_SELF)
    return end.ru_utime + end.ru_stime - start.ru_utime - start.ru_stime, matched
first, matched = one_pass()
second, _ = one_pass()
print(json.dumps({"first": first, "second": second, "matched": matched}))
"""


def is_elf(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            return handle.read(4) == b"\x7fELF"
    except OSError:
        return False


def build_corpus(target: Path, size: int) -> list[Path]:
    sources = []
    for root in SOURCES:
        for dirpath, _, names in os.walk(root):
            for name in names:
                path = Path(dirpath) / name
                if path.is_symlink() or not path.is_file():
                    continue
                length = path.stat().st_size
                if 4096 <= length <= MAX_SCAN_BYTES and is_elf(path):
                    sources.append((path, length))
    if not sources:
        raise SystemExit("no ELF files found to build the corpus")
    files, total, copy = [], 0, 0
    while total < size:
        for path, length in sources:
            if total >= size:
                break
            dest = target / f"c{copy}" / path.name
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, dest)
            files.append(dest)
            total += length
        copy += 1
    return files


def yara_rules(rules) -> str:  # type: ignore[no-untyped-def]
    def quote(text: str) -> str:
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    out = []
    for rule in rules.string_rules:
        strings = [str(s) for s in rule.params["strings"]]
        body = "\n".join(f"    $s{i} = {quote(s)}" for i, s in enumerate(strings))
        out.append(f"rule {rule.id.replace('-', '_')}\n{{\n  strings:\n{body}\n  condition:\n"
                   f"    {rule.params.get('min_matches', 1)} of them\n}}\n")
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the corpus in bench/out/exe-corpus for the next run")
    args = parser.parse_args()
    grep, yara = shutil.which("grep"), shutil.which("yara")
    rules = load_rules()
    strings = rules.signature_strings()
    work = Path(tempfile.mkdtemp(prefix="exe-scan-", dir=REPO / "bench" / "out")) if not args.keep else \
        REPO / "bench" / "out" / "exe-corpus"
    work.mkdir(parents=True, exist_ok=True)
    try:
        corpus = work / "corpus"
        listing = work / "files.txt"
        if args.keep and listing.exists():
            files = [Path(line) for line in listing.read_text().splitlines()]
        else:
            shutil.rmtree(corpus, ignore_errors=True)
            corpus.mkdir()
            files = build_corpus(corpus, args.size_mb * 1024 * 1024)
            listing.write_text("".join(f"{f}\n" for f in files))
        total = sum(f.stat().st_size for f in files)
        (work / "strings.json").write_text(json.dumps(strings))
        (work / "strings.txt").write_text("".join(f"{s}\n" for s in strings))
        (work / "rules.yar").write_text(yara_rules(rules))
        subprocess.run(["cat", *map(str, files)], stdout=subprocess.DEVNULL, check=True)      # warm the page cache
        mb = total / 1e6
        print(f"corpus: {len(files)} ELF files, {mb:.0f} MB; {len(strings)} signature strings in "
              f"{len(rules.string_rules)} rules; page cache warm; CPU seconds are user+system, median of {args.repeat}")
        agent_first, agent_second, grep_cpu, yara_cpu, agent_yara = [], [], [], [], []
        matched = 0
        with_yara_python = importlib.util.find_spec("yara") is not None
        for _ in range(args.repeat):
            cost = measure([sys.executable, "-c", AGENT_SCAN, str(work / "strings.json"), str(listing), "builtin"],
                           capture=True, cwd=str(REPO))
            data = json.loads(cost.stdout)
            agent_first.append(data["first"])
            agent_second.append(data["second"])
            matched = data["matched"]
            if with_yara_python:
                cost = measure([sys.executable, "-c", AGENT_SCAN, str(work / "strings.json"), str(listing), "yara"],
                               capture=True, cwd=str(REPO))
                agent_yara.append(json.loads(cost.stdout)["first"])
            if grep:
                grep_cpu.append(measure([grep, "-c", "-a", "-F", "-f", str(work / "strings.txt"),
                                         *map(str, files)]).cpu)
            if yara:
                yara_cpu.append(measure([yara, "-r", str(work / "rules.yar"), str(corpus)]).cpu)
        a1, a2 = median(agent_first), median(agent_second)
        print(f"{'agent scanner, first scan':<34} {a1:>7.2f}s CPU {mb / a1:>8.0f} MB/s  ({matched} files matched a string)")
        print(f"{'agent scanner, second scan (cache)':<34} {a2:>7.3f}s CPU {mb / max(a2, 1e-9):>8.0f} MB/s")
        if agent_yara:
            ay = median(agent_yara)
            print(f"{'agent scanner with yara-python':<34} {ay:>7.2f}s CPU {mb / ay:>8.0f} MB/s")
        else:
            print("agent scanner with yara-python: not measured (pip install '.[yara]')")
        if grep_cpu:
            g = median(grep_cpu)
            if agent_yara:
                print(f"{'':<34} agent(yara-python)/grep {median(agent_yara) / g:.2f}x")
            print(f"{'grep -c -a -F -f strings.txt':<34} {g:>7.2f}s CPU {mb / g:>8.0f} MB/s   agent/grep {a1 / g:.2f}x "
                  f"(target <= 1.5x)")
        else:
            print("grep not found")
        if yara_cpu:
            y = median(yara_cpu)
            print(f"{'yara -r rules.yar (CLI)':<34} {y:>7.2f}s CPU {mb / y:>8.0f} MB/s   agent/yara {a1 / y:.2f}x "
                  f"(target <= 1x)")
            if agent_yara:
                print(f"{'':<34} agent(yara-python)/yara {median(agent_yara) / y:.2f}x")
        else:
            print("yara CLI not found (Debian package `yara`)")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
