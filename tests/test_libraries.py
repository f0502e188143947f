"""Mapped libraries tell a real training job from a miner posing as one."""
from __future__ import annotations

import os
import subprocess
import sys

from audit_agent.collect.libraries import mapped_libraries
from audit_agent.model import Severity, Verdict
from tests.factories import gpu, proc, scan, snapshot

TRAINING = "python3 train.py --epochs 90 --batch-size 256"


def test_maps_of_a_real_process_list_its_shared_libraries():
    child = subprocess.Popen([sys.executable, "-c", "import ssl, time; time.sleep(30)"], stdin=subprocess.DEVNULL)
    try:
        import time
        deadline = time.monotonic() + 10
        libraries: list[str] = []
        while time.monotonic() < deadline and not any("ssl" in lib for lib in libraries):
            libraries = mapped_libraries(child.pid) or []
            time.sleep(0.1)
        assert any(lib.startswith("libc.so") or lib.startswith("libc-") for lib in libraries)
        assert any("ssl" in lib for lib in libraries)
        assert all("/" not in lib for lib in libraries)
    finally:
        os.kill(child.pid, 9)
        child.wait()


def test_unreadable_maps_is_none(tmp_path):
    assert mapped_libraries(999999, str(tmp_path)) is None


def test_fake_maps_tree(tmp_path):
    (tmp_path / "5").mkdir()
    (tmp_path / "5" / "maps").write_text(
        "7f00-7f01 r-xp 00000000 08:01 1 /opt/conda/lib/python3.11/site-packages/torch/lib/libtorch_cuda.so\n"
        "7f01-7f02 r-xp 00000000 08:01 2 /usr/lib/x86_64-linux-gnu/libcudnn.so.8 (deleted)\n"
        "7f02-7f03 rw-p 00000000 00:00 0 [heap]\n"
        "7f03-7f04 r-xp 00000000 08:01 1 /opt/conda/lib/python3.11/site-packages/torch/lib/libtorch_cuda.so\n")
    assert mapped_libraries(5, str(tmp_path)) == ["libtorch_cuda.so", "libcudnn.so.8"]


def test_python_on_a_busy_gpu_with_torch_mapped_is_quiet():
    job = proc(40, TRAINING, cpu=100.0, libraries=["libc.so.6", "libtorch_cuda.so", "libcudnn.so.8"])
    report = scan(snapshot([job], gpus=[gpu(0, 99.0, [40])]))
    assert report.findings == []
    assert report.verdict == Verdict.COMPLIANT


def test_python_on_a_busy_gpu_without_any_ml_library_asks_for_review():
    # e.g. a GPU miner binary renamed to python3 and started as "python3 train.py"
    posing = proc(41, "python3 train_model.py --epochs 10", exe="/home/bob/.local/bin/python3", cpu=100.0,
                  libraries=["libc.so.6", "libcuda.so.1", "libnvrtc.so.12"])
    report = scan(snapshot([posing], gpus=[gpu(0, 99.0, [41])]))
    assert len(report.findings) == 1
    assert report.findings[0].severity.rank < Severity.HIGH.rank
    assert report.verdict == Verdict.NEEDS_REVIEW
