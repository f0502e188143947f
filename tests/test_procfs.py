"""Host facts read from /proc and /sys without psutil: the same answers psutil gives, from the same files."""
from __future__ import annotations

import sys

import psutil
import pytest

from audit_agent.collect import procfs

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux /proc and /sys")


@linux
def test_boot_time_cpu_counts_and_memory_agree_with_psutil():
    assert procfs.boot_time() == pytest.approx(psutil.boot_time(), abs=1.0)
    assert procfs.logical_cpus() == psutil.cpu_count(logical=True)
    assert procfs.physical_cores() == psutil.cpu_count(logical=False)
    assert procfs.memory_total() == psutil.virtual_memory().total


def write_stat(root, user, nice, system, idle, iowait, irq=0, softirq=0, steal=0, guest=0):
    (root / "stat").write_text(f"cpu  {user} {nice} {system} {idle} {iowait} {irq} {softirq} {steal} {guest} 0\n"
                               "cpu0 1 2 3 4 5 6 7 8 9 10\nbtime 1700000000\n")


def test_cpu_load_is_the_busy_share_of_the_time_between_two_calls(tmp_path):
    write_stat(tmp_path, 100, 0, 100, 700, 100)
    load = procfs.CpuLoad(str(tmp_path))
    assert load.percent() == pytest.approx(20.0)                  # since boot: 200 busy of 1,000
    write_stat(tmp_path, 400, 0, 200, 900, 100, guest=50)         # user +300, system +100, idle +200; guest is inside user
    assert load.percent() == pytest.approx(66.7, abs=0.05)   # +400 busy of +600
    assert load.percent() == 0.0                                   # no time passed: nothing to measure
    assert procfs.boot_time(str(tmp_path)) == 1700000000.0


def test_physical_cores_fall_back_to_cpuinfo_pairs(tmp_path):
    (tmp_path / "cpuinfo").write_text("processor: 0\nphysical id: 0\ncore id: 0\n\nprocessor: 1\nphysical id: 0\n"
                                      "core id: 0\n\nprocessor: 2\nphysical id: 1\ncore id: 0\n\n")
    assert procfs.physical_cores(sys_root=str(tmp_path / "no-sys"), proc_root=str(tmp_path)) == 2


@pytest.mark.parametrize("name, reader", [("stat", procfs.boot_time), ("meminfo", procfs.memory_total)])
def test_a_file_without_the_line_is_an_error_not_a_guess(tmp_path, name, reader):
    (tmp_path / name).write_text("nothing useful\n")
    with pytest.raises(OSError):
        reader(str(tmp_path))
