"""The persistence check kept between runs (collect/persistence/reuse.py): reused only while every file, folder,
link and absent name it looked at is as it was, saved only when it can vouch for itself, trusted only when ours."""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import msgspec
import pytest

from audit_agent.collect import CollectOptions
from audit_agent.collect import persistence as collector
from audit_agent.collect.persistence import reuse
from audit_agent.model import CoverageStatus, Snapshot
from tests.factories import UNTRUSTED_WAYS, plant_state_file
from tests.factories import write_file as write

FINGERPRINT = "f" * 64
TICK = 0.03         # longer than a kernel clock tick: a change after it has other timestamps than the files before


@pytest.fixture
def root(tmp_path: Path, monkeypatch):
    """A small host: cron, systemd (a unit enabled through a link), a user with a .bashrc that starts a script
    from their home, which starts a program with a config. In a folder every user may pass through: a user's
    program's config is read as that user (uid 1000 here), as the process itself could."""
    monkeypatch.setenv("AUDIT_AGENT_STATE_DIR", str(tmp_path / "state"))
    top = Path(tempfile.mkdtemp(prefix="aa-reuse-")) / "root"
    top.parent.chmod(0o755)
    write(top / "etc/passwd", "root:x:0:0:root:/root:/bin/bash\ncarol:x:1000:1000::/home/carol:/bin/bash\n")
    write(top / "etc/crontab", "17 * * * * root cd / && run-parts --report /etc/cron.hourly\n")
    write(top / "etc/cron.d/backup", "30 2 * * * root /usr/local/bin/backup --to /srv/b\n")
    write(top / "usr/local/bin/backup", "#!/bin/sh\nrsync -a /home /srv/b\n")
    write(top / "etc/systemd/system/web.service", "[Service]\nExecStart=/usr/bin/gunicorn --workers 4 app:app\n")
    (top / "etc/systemd/system/multi-user.target.wants").mkdir(parents=True)
    os.symlink("../web.service", top / "etc/systemd/system/multi-user.target.wants/web.service")
    write(top / "home/carol/.bashrc", "alias ll='ls -l'\nnohup /home/carol/bin/agent >/dev/null 2>&1 &\n")
    write(top / "home/carol/bin/agent", "#!/bin/sh\nexec /home/carol/bin/worker -c config.json\n")
    write(top / "home/carol/bin/worker", "#!/bin/sh\nsleep 1000\n")
    for path in [top / "usr/local/bin/backup", top / "home/carol/bin/agent", top / "home/carol/bin/worker"]:
        path.chmod(0o755)
    # Every look is racy until a clock tick has passed since the tree was written (see the reuse docstring).
    write(top / "home/carol/bin/config.json", '{"threads": 2}')
    time.sleep(TICK)
    monkeypatch.setattr(reuse, "RACY_SECONDS", 0.0)
    yield top
    shutil.rmtree(top.parent, ignore_errors=True)


def collect(top: Path, fingerprint: str | None = FINGERPRINT) -> tuple[list, object]:
    snapshot = Snapshot()
    [coverage] = collector.collect_persistence(snapshot, CollectOptions(etc_root=str(top / "etc"),
                                                                        rules_fingerprint=fingerprint))
    return [msgspec.to_builtins(e) for e in snapshot.persistence], coverage


def reused(coverage) -> bool:
    return any(detail.code == "persistence_unchanged" for detail in coverage.details)


def saved_file(top: Path) -> Path:
    return Path(os.environ["AUDIT_AGENT_STATE_DIR"]) / reuse.FILE_NAME


def test_an_unchanged_host_is_checked_not_read_and_gives_the_same_entries(root, monkeypatch):
    entries, coverage = collect(root)
    assert not reused(coverage) and saved_file(root).is_file()
    assert any("/home/carol/bin/agent" in e["text"] for e in entries)

    calls: list[int] = []
    monkeypatch.setattr(collector, "read_persistence", lambda *a, **k: calls.append(1))
    again, coverage = collect(root)
    assert calls == [] and again == entries
    assert reused(coverage) and coverage.status == CoverageStatus.OK
    assert "not read again" in coverage.reason


def change_content_same_size(top: Path) -> None:
    path = top / "etc/cron.d/backup"
    before = path.stat()
    path.write_text(path.read_text().replace("/srv/b", "/srv/x"))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))        # the mtime put back: only ctime tells


def swap_for_link(top: Path) -> None:
    (top / "etc/cron.d/backup").unlink()
    write(top / "etc/elsewhere", "* * * * * root /tmp/.x/xmrig\n")
    os.symlink("../elsewhere", top / "etc/cron.d/backup")


def chown(top: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("changing an owner needs root")
    os.chown(top / "home/carol/bin/worker", 1000, 1000)


MUTATIONS = {
    "a line added": lambda top: (top / "etc/crontab").open("a").write("@reboot root /tmp/.x/kworker\n"),
    "same size, mtime put back": change_content_same_size,
    "a new file in a read folder": lambda top: write(top / "etc/cron.d/zz", "* * * * * root /tmp/.x/xmrig\n"),
    "a file removed": lambda top: (top / "etc/cron.d/backup").unlink(),
    "a file renamed": lambda top: (top / "etc/cron.d/backup").rename(top / "etc/cron.d/backup2"),
    "a file swapped for a link": swap_for_link,
    "a file a user lacked": lambda top: write(top / "home/carol/.profile", "/home/carol/bin/worker &\n"),
    "the program an entry starts": lambda top: (top / "home/carol/bin/agent").open("a").write("/tmp/x\n"),
    "a program a script starts": lambda top: (top / "home/carol/bin/worker").open("a").write("/tmp/y\n"),
    "a program's config": lambda top: write(top / "home/carol/bin/config.json",
                                            '{"pools": [{"url": "pool.example:3333"}]}'),
    "a config next to a program": lambda top: write(top / "usr/local/bin/config.json",
                                                    '{"pools": [{"url": "pool.example:3333"}]}'),
    "a mode": lambda top: (top / "home/carol/bin/worker").chmod(0o777),
    "an owner": chown,
    "a home moved in passwd": lambda top: (top / "etc/passwd").open("a").write("dave:x:1001:1001::/srv/d:/bin/sh\n"),
    "a unit's enabling link removed": lambda top: (top / "etc/systemd/system/multi-user.target.wants/web.service").unlink(),
    "a timestamp only": lambda top: os.utime(top / "etc/crontab", (1, 1)),
}


@pytest.mark.parametrize("mutation", list(MUTATIONS))
def test_any_change_to_what_was_looked_at_reads_the_host_again(root, mutation):
    collect(root)
    assert reused(collect(root)[1])
    time.sleep(TICK)
    MUTATIONS[mutation](root)
    after, coverage = collect(root)
    assert not reused(coverage)
    fresh, _ = collect(root, fingerprint=None)          # no key: a plain read, nothing kept or reused
    assert after == fresh


def test_the_result_of_a_read_racing_with_a_write_is_not_kept(root, monkeypatch):
    monkeypatch.setattr(reuse, "RACY_SECONDS", 2.0)
    write(root / "etc/cron.d/fresh", "* * * * * root /usr/bin/true\n")       # changed just before the read
    collect(root)
    assert not saved_file(root).exists()


def test_a_partial_read_is_never_kept(root, tmp_path):
    write(tmp_path / "outside", "* * * * * root /usr/bin/true\n")
    os.symlink(tmp_path / "outside", root / "etc/cron.d/link-out")        # refused: the target is outside
    _, coverage = collect(root)
    assert coverage.status == CoverageStatus.PARTIAL and not saved_file(root).exists()


def test_without_a_pack_fingerprint_nothing_is_kept(root):
    collect(root, fingerprint=None)
    assert not saved_file(root).exists()


def test_another_pack_or_an_old_or_future_read_is_read_again(root, monkeypatch):
    collect(root)
    assert not reused(collect(root, fingerprint="e" * 64)[1])
    collect(root)
    saved = msgspec.msgpack.decode(saved_file(root).read_bytes(), type=reuse.Saved)
    for read_at in (time.time() - reuse.MAX_AGE_SECONDS - 60, time.time() + 3600):
        saved_file(root).write_bytes(msgspec.msgpack.encode(msgspec.structs.replace(saved, read_at=read_at)))
        assert not reused(collect(root)[1])


@pytest.mark.parametrize("how", UNTRUSTED_WAYS)
def test_a_saved_result_others_could_have_written_or_that_is_torn_is_not_used(root, how):
    write(root / "etc/cron.d/miner", "* * * * * root /tmp/.x/xmrig -o pool.example:3333\n")
    time.sleep(TICK)
    entries, _ = collect(root)
    # What an attacker would plant: the same looks, and no entries at all.
    saved = msgspec.msgpack.decode(saved_file(root).read_bytes(), type=reuse.Saved)
    plant_state_file(saved_file(root), msgspec.msgpack.encode(msgspec.structs.replace(saved, entries=[])), how)
    again, coverage = collect(root)
    assert not reused(coverage) and again == entries
    assert any("xmrig" in e["text"] for e in again)


def test_the_planted_result_would_hide_the_entry_were_it_trusted(root):
    """The test above means something: a result that is ours is believed."""
    write(root / "etc/cron.d/miner", "* * * * * root /tmp/.x/xmrig -o pool.example:3333\n")
    time.sleep(TICK)
    collect(root)
    saved = msgspec.msgpack.decode(saved_file(root).read_bytes(), type=reuse.Saved)
    saved_file(root).write_bytes(msgspec.msgpack.encode(msgspec.structs.replace(saved, entries=[])))
    entries, coverage = collect(root)
    assert reused(coverage) and entries == []


def test_the_coverage_of_a_reused_read_is_phrased_in_both_languages(root):
    from audit_agent.i18n import coverage_reasons
    collect(root)
    _, coverage = collect(root)
    detail = next(d for d in coverage.details if d.code == "persistence_unchanged")
    for lang in ("en", "zh-CN"):
        text = coverage_reasons(lang)[detail.code].format(**detail.facts)
        assert str(detail.facts["looks"]) in text and "{" not in text


def test_a_copy_of_the_tree_elsewhere_is_not_the_same_host(root, tmp_path):
    collect(root)
    copy = root.parent / "copy"
    shutil.copytree(root, copy, symlinks=True)
    time.sleep(TICK)
    assert not reused(collect(copy)[1])
