"""The persistence check on a hostile host: floods, deep folders, symlinks out of a home, a failing place."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from audit_agent.collect import CollectOptions
from audit_agent.collect import persistence as collector
from audit_agent.collect.persistence import system
from audit_agent.evaluate import evaluate
from audit_agent.model import CoverageStatus, Severity, Snapshot
from tests.factories import write_file as write

PASSWD = ("root:x:0:0:root:/root:/bin/bash\nalice:x:1000:1000::/home/alice:/bin/bash\n"
          "bob:x:1001:1001::/home/bob:/bin/bash\n")



@pytest.fixture
def root(tmp_path: Path) -> Path:
    base = tmp_path / "root"
    write(base / "etc/passwd", PASSWD)
    write(base / "etc/cron.d/sys", "@reboot root /var/tmp/.sys/kworker -B\n")
    write(base / "home/bob/.config/systemd/user/bob.service", "[Service]\nExecStart=/home/bob/.cache/.k/kthreadd\n")
    return base


def scan(root: Path):
    snapshot = Snapshot()
    [coverage] = collector.collect_persistence(snapshot, CollectOptions(etc_root=str(root / "etc")))
    return snapshot, coverage


def test_a_flood_of_units_in_one_home_hides_neither_the_real_unit_nor_anyone_else(root: Path):
    units = root / "home/alice/.config/systemd/user"
    real = write(units / "zz-real.service", "[Service]\nExecStart=/home/alice/.local/share/.d/dbus-sync\n")
    (units / "default.target.wants").mkdir(parents=True)
    os.symlink(real, units / "default.target.wants/zz-real.service")
    for index in range(5000):       # decoys, newer than the real unit, that nothing starts
        (units / f"decoy{index:04d}.service").write_text("[Service]\nExecStart=/usr/bin/true\n")
    snapshot, coverage = scan(root)
    paths = {Path(e.path).name for e in snapshot.persistence}
    assert {"zz-real.service", "bob.service", "sys"} <= paths
    real_entry = next(e for e in snapshot.persistence if e.path.endswith("zz-real.service"))
    assert real_entry.trigger == "login"
    assert coverage.status == CoverageStatus.PARTIAL
    assert "user alice: limit of" in coverage.reason and "not read" in coverage.reason
    assert "user bob:" not in coverage.reason and "system:" not in coverage.reason


def remove_deep_tree(path: Path) -> None:
    """Remove a tree of any depth without recursion (shutil.rmtree, and pytest's clean-up of old temporary
    folders with it, hit RecursionError on 1,100 levels: that would break every later pytest run as root)."""
    stack = [(os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW), "")]
    while stack:
        fd = stack[-1][0]
        child = ""
        with os.scandir(fd) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    child = entry.name
                    break
                os.unlink(entry.name, dir_fd=fd)
        if child:
            stack.append((os.open(child, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd), child))
            continue
        os.close(fd)
        _, name = stack.pop()
        if stack:
            os.rmdir(name, dir_fd=stack[-1][0])
    os.rmdir(path)


@pytest.fixture
def deep_units(root: Path):
    deep = root / "home/alice/.config/systemd/user"
    deep.mkdir(parents=True)
    yield deep
    remove_deep_tree(deep)


def test_thousands_of_nested_folders_cost_a_counter_not_the_check(root: Path, deep_units: Path, compiled_rules):
    deep = deep_units
    fd = os.open(deep, os.O_RDONLY | os.O_DIRECTORY)
    try:        # built through directory descriptors: the whole path is far past PATH_MAX
        for _ in range(1100):
            os.mkdir("d", dir_fd=fd)
            inner = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = inner
        unit = os.open("deep.service", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
        os.write(unit, b"[Service]\nExecStart=/tmp/x\n")
        os.close(unit)
    finally:
        os.close(fd)
    snapshot, coverage = scan(root)
    assert coverage.status == CoverageStatus.PARTIAL
    assert "below the depth limit" in coverage.reason and "user alice" in coverage.reason
    findings = evaluate(Snapshot(persistence=snapshot.persistence), compiled_rules).findings
    assert any(f.severity.rank >= Severity.HIGH.rank and f.subject.path.endswith("/sys") for f in findings)
    assert any(f.subject.path.endswith("bob.service") for f in findings)


def test_a_user_folder_linked_to_root_lists_nothing_from_root(root: Path, tmp_path: Path):
    secret = tmp_path / "real-root"
    write(secret / "systemd/user/backup-keys.service", "[Service]\nExecStart=/root/secret-tool --key s3cr3t\n")
    write(secret / "root-only.sh", "nohup /root/secret-tool &\n")
    config = root / "home/alice/.config"
    config.mkdir(parents=True)
    os.symlink(secret / "systemd", config / "systemd")          # ~/.config/systemd -> (a stand-in for) /root
    os.symlink("/root", config / "autostart")                   # and the real /root
    os.symlink(secret / "root-only.sh", root / "home/alice/.bashrc")
    snapshot, coverage = scan(root)
    dumped = json.dumps(Snapshot(persistence=snapshot.persistence).to_dict())
    assert "secret-tool" not in dumped and "backup-keys" not in dumped and str(secret) not in dumped
    assert coverage.status == CoverageStatus.PARTIAL and "symlink(s) not followed" in coverage.reason
    assert "user alice" in coverage.reason
    assert any(e.path.endswith("bob.service") for e in snapshot.persistence)


def test_a_link_inside_the_home_to_the_owners_own_file_is_followed(root: Path):
    dotfiles = write(root / "home/alice/dotfiles/bashrc", "nohup /home/alice/bin/sync &\n")
    foreign = write(root / "home/alice/dotfiles/zshrc", "nohup /home/alice/bin/other &\n")
    os.symlink(dotfiles, root / "home/alice/.bashrc")
    os.symlink(foreign, root / "home/alice/.zshrc")
    if os.geteuid() == 0:
        os.chown(dotfiles, 1000, 1000)          # hers; the zshrc target stays root's
    snapshot, coverage = scan(root)
    texts = {e.text for e in snapshot.persistence}
    assert "nohup /home/alice/bin/sync &" in texts
    if os.geteuid() == 0:
        assert "nohup /home/alice/bin/other &" not in texts
        assert str(root / "home/alice/.zshrc") in coverage.reason


def test_a_failing_place_loses_only_its_own_entries(root: Path, monkeypatch):
    def broken(tree, out):
        raise ValueError("parser bug")

    places = tuple((name, broken if name == "crontabs" else step) for name, step in system.PLACES)
    monkeypatch.setattr(collector, "PLACES", places)
    write(root / "etc/rc.local", "/opt/boot/thing &\n")
    snapshot, coverage = scan(root)
    assert not any(e.path.endswith("/sys") for e in snapshot.persistence)
    assert any(e.path.endswith("rc.local") for e in snapshot.persistence)
    assert any(e.path.endswith("bob.service") for e in snapshot.persistence)
    assert coverage.status == CoverageStatus.PARTIAL and "crontabs: ValueError: parser bug" in coverage.reason


def test_a_fifo_and_a_device_in_place_of_a_unit_are_never_read(root: Path):
    units = root / "home/alice/.config/systemd/user"
    units.mkdir(parents=True)
    os.mkfifo(units / "fifo.service")
    os.symlink("/dev/zero", units / "zero.service")
    snapshot, _ = scan(root)                    # returns: a FIFO read would block, /dev/zero would never end
    assert not any("fifo.service" in e.path or "zero.service" in e.path for e in snapshot.persistence)


def test_every_users_scope_has_its_own_budget(root: Path):
    for user in ("alice", "bob"):
        for index in range(30):
            write(root / f"home/{user}/.config/autostart/a{index}.desktop", "[Desktop Entry]\nExec=/usr/bin/true\n")
    limits = collector.fs.Limits(files=10, bytes=1 << 20, seconds=60, names=1000)
    out = collector.read_persistence(root / "etc", user_limits=limits)
    scopes = {scope.name: scope for scope in out.scopes}
    assert scopes["user alice"].files == 10 and scopes["user bob"].files == 10
    assert scopes["system"].limit_hit == ""


def test_a_tree_reopens_folders_it_kept_without_losing_entries_or_descriptors(tmp_path):
    """The folders a tree already opened are where the next path below them starts: a listing after reads in
    the same folder still sees every name, a symlink swapped in later is still judged, and close() gives back
    every descriptor."""
    from audit_agent.collect.persistence.fs import SYSTEM_LIMITS, Scope, Tree
    for index in range(5):
        write(tmp_path / "etc/cron.d" / f"job{index}", f"* * * * * root /bin/true {index}\n")
    (tmp_path / "outside").mkdir()
    write(tmp_path / "outside/secret", "x\n")
    before = len(os.listdir("/proc/self/fd"))
    scope = Scope("system", SYSTEM_LIMITS)
    with Tree(str(tmp_path / "etc"), scope, set()) as tree:
        assert [name for name, _ in tree.listdir("cron.d")] == [f"job{i}" for i in range(5)]
        assert all(tree.read(f"cron.d/job{i}") is not None for i in range(5))
        assert [name for name, _ in tree.listdir("cron.d")] == [f"job{i}" for i in range(5)]
        assert [name for name, _ in tree.listdir("cron.d")] == [f"job{i}" for i in range(5)]
        os.symlink(str(tmp_path / "outside"), tmp_path / "etc/cron.d/away")
        assert tree.read("cron.d/away/secret") is None
        assert scope.refused.count == 1
    assert len(os.listdir("/proc/self/fd")) == before


def test_a_tree_lists_its_top_once_and_asks_nothing_for_names_that_are_not_there(tmp_path, monkeypatch):
    """Most places looked for in a home are missing: the top folder is listed once and a path whose first
    name is not in it is missing without a walk of its own; names that are there, and a top with more names
    than the listing keeps, are read as before, and the listing does not move the tree's own descriptor."""
    from audit_agent.collect.persistence import fs
    write(tmp_path / "home/ann/.bashrc", "nohup /opt/x &\n")
    write(tmp_path / "home/ann/.config/systemd/user/a.service", "[Service]\nExecStart=/opt/a\n")
    looked: list[str] = []
    real_stat = os.stat

    def counting_stat(path, *args, **kwargs):
        looked.append(os.fsdecode(path))
        return real_stat(path, *args, **kwargs)

    monkeypatch.setattr(fs.os, "stat", counting_stat)
    scope = fs.Scope("user ann", fs.USER_LIMITS)
    with fs.Tree(str(tmp_path / "home/ann"), scope, set()) as tree:
        assert tree.read(".zlogin") is None and tree.read(".local/share/systemd/user/b.service") is None
        assert looked == []                             # nothing asked for the names that are not there
        assert tree.read(".bashrc") is not None
        assert tree.read(".config/systemd/user/a.service") is not None
        assert [name for name, _ in tree.listdir("")] == [".bashrc", ".config"]
    assert not scope.denied.count and not scope.refused.count

    if fs.rawsys.available():       # a readdir hook hiding .bashrc from `ls` does not hide it from the check
        real_listdir, real_scandir = os.listdir, os.scandir
        with monkeypatch.context() as patch:
            patch.setattr(os, "listdir", lambda *a, **k: [n for n in real_listdir(*a, **k) if n != ".bashrc"])
            patch.setattr(os, "scandir", lambda *a, **k: iter([e for e in real_scandir(*a, **k) if e.name != ".bashrc"]))
            with fs.Tree(str(tmp_path / "home/ann"), fs.Scope("user ann", fs.USER_LIMITS), set()) as tree:
                assert tree.read(".bashrc") is not None

    monkeypatch.setattr(fs, "MAX_TOP_NAMES", 1)         # too many names to keep: every path is walked
    with fs.Tree(str(tmp_path / "home/ann"), fs.Scope("user ann", fs.USER_LIMITS), set()) as tree:
        looked.clear()
        assert tree.read(".zlogin") is None and looked == [".zlogin"]
        assert tree.read(".bashrc") is not None
