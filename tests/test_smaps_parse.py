"""parse_smaps reads a mapping's first line and three counters in one regex pass: the same mappings, pages
and flags as reading every line, on this host's real smaps files, a real process with hundreds of thread
stacks, and generated ones; and a mapped file's name cannot start a mapping of its own."""
from __future__ import annotations

import glob
import subprocess
import sys

from hypothesis import given, settings
from hypothesis import strategies as st

from audit_agent.collect import memscan


def every_line(text: bytes) -> list[dict]:
    """Reference: the reading of every line, as parse_smaps read smaps before (flags compared as words)."""
    mappings: list[dict] = []
    for line in text.split(b"\n"):
        head = line.split(None, 5)
        if not head:
            continue
        if b"-" in head[0] and len(head) >= 5 and not head[0].endswith(b":"):
            try:
                start, end = (int(part, 16) for part in head[0].split(b"-"))
            except ValueError:
                continue
            mappings.append({"start": start, "end": end, "perms": head[1].decode("ascii", "replace"),
                             "path": head[5].decode("utf-8", "replace").strip() if len(head) == 6 else "",
                             "kernel_page_kb": 4, "anon_huge_kb": 0, "flags": ""})
        elif mappings and head[0] == b"KernelPageSize:" and len(head) > 1 and head[1].isdigit():
            mappings[-1]["kernel_page_kb"] = int(head[1])
        elif mappings and head[0] == b"AnonHugePages:" and len(head) > 1 and head[1].isdigit():
            mappings[-1]["anon_huge_kb"] = int(head[1])
        elif mappings and head[0] == b"VmFlags:":
            mappings[-1]["flags"] = " ".join(part.decode("ascii", "replace") for part in head[1:])
    return mappings


def same(text: bytes) -> None:
    got, expected = memscan.parse_smaps(text), every_line(text)
    for mapping in got + expected:
        mapping["flags"] = mapping["flags"].split()
    assert got == expected


def test_this_hosts_smaps_files_parse_the_same():
    threads = "import threading, time\nfor _ in range(300): threading.Thread(target=time.sleep, args=(60,), daemon=True).start()\nprint('ready', flush=True); time.sleep(60)"
    child = subprocess.Popen([sys.executable, "-c", threads], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and "ready" in child.stdout.readline()
        texts = []
        for path in [f"/proc/{child.pid}/smaps", *glob.glob("/proc/[0-9]*/smaps")]:
            try:
                with open(path, "rb") as handle:
                    texts.append(handle.read(memscan.MAX_SMAPS_BYTES))
            except OSError:
                continue
        assert len(memscan.parse_smaps(texts[0])) > 600         # a stack and a guard for each thread
        for text in texts:
            same(text)
    finally:
        child.kill()
        child.wait()


HEADERS = st.builds(lambda a, b, perms, path: f"{a:x}-{b:x} {perms} 00000000 00:00 0 {path}",
                    st.integers(0, 1 << 47), st.integers(0, 1 << 47), st.sampled_from(["rw-p", "r-xp", "---p", "rwxs"]),
                    st.sampled_from(["", "[heap]", "[stack]", "/usr/lib/libc.so.6", "/opt/x (deleted)", " spaced  name "]))
COUNTERS = st.sampled_from(["Size:                132 kB", "KernelPageSize:        4 kB", "KernelPageSize:     2048 kB",
                            "AnonHugePages:      2048 kB", "AnonHugePages:  x kB", "KernelPageSize:4 kB",
                            "VmFlags: rd wr mr mw me ac sd", "VmFlags: rd wr mr mw me gd ac ht hg  ",
                            "VmFlags:", "Rss:  4 kB", "", "   ", "garbage-line here", "zz-yy rw-p 0 0 0"])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(HEADERS, COUNTERS), max_size=40))
def test_generated_smaps_parse_the_same(lines):
    same("\n".join(lines).encode())


def test_a_mapped_files_name_cannot_start_a_mapping():
    text = b"7f0000000000-7f0000001000 r--p 00000000 08:01 42 /tmp/x\r7f0000100000-7f0000200000 rw-p 0 0 0 /evil\n"
    [mapping] = memscan.parse_smaps(text)
    assert mapping["path"] == "/tmp/x\r7f0000100000-7f0000200000 rw-p 0 0 0 /evil"
