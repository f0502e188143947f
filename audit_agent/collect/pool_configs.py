"""Stratum V2 (SRI) pool, translator and job-declarator configs, read where the running role reads them.

The SRI roles (pool_sv2, translator_sv2, jd_server, jd_client) take their TOML config with `-c`/`--config`
(stratum-mining/stratum roles/*/config-examples). What tells a test pool from one serving main-network
miners is in it:
  * `coinbase_reward_script = "addr(tb1q...)"` (newer roles) or `coinbase_outputs` (older): where the block
    reward goes; a bcrt1/tb1 address is a test chain, a bc1/1/3 address the main network;
  * `[template_provider_type.BitcoinCoreIpc] network = "testnet4"`: the chain of the template source;
  * `tp_address` / `[template_provider_type.Sv2Tp] address`: the template provider (bitcoind -sv2);
  * the translator's `upstream_address` + `upstream_port`, or `[[upstreams]] address/port` (and a JD
    client's `pool_address`/`jds_address`): the pool it sends miners' shares to.
The file is read like a family config (collect/families.py): through /proc/PID/root, bounded, without
following symlinks, and only if the process's own user could read it. The facts land in a FamilyConfig of
family SV2 (no family rule reads it); detect/research.py judges the network from them.
"""
from __future__ import annotations

import os
from functools import lru_cache
from typing import Any

from audit_agent.collect.families import Found, arg_value, owner_name, read_as_process
from audit_agent.model import ConfigReader, FamilyConfig, ProcessInfo
from audit_agent.redact import cap

FAMILY = "SV2"
PROGRAMS = frozenset({"pool_sv2", "translator_sv2", "jd_server", "jd_client", "jd_server_sv2", "jd_client_sv2",
                      "mining_proxy_sv2"})
MAX_BYTES = 256 * 1024
MAX_PROCESSES = 64
MAX_VALUES = 12


def is_sv2_role(proc: ProcessInfo) -> bool:
    return _is_sv2_role(proc.name, proc.exe, proc.cmdline[0] if proc.cmdline else "")


@lru_cache(maxsize=4096)        # a host's thousands of processes run a few programs under a few names
def _is_sv2_role(name: str, exe: str, argv0: str) -> bool:
    names = [name, exe.removesuffix(" (deleted)"), argv0]
    return any(os.path.basename(n) in PROGRAMS for n in names if n)


def config_path(proc: ProcessInfo) -> str:
    value = arg_value(proc.cmdline, "-c") or arg_value(proc.cmdline, "--config")
    if not value:
        return ""
    if not value.startswith("/"):
        if not proc.cwd.startswith("/"):
            return ""
        value = os.path.join(proc.cwd, value)
    return os.path.normpath(value)


def read_pool_configs(processes: list[ProcessInfo], proc_root: str, found: Found,
                      results: dict[tuple[str, str], FamilyConfig | None]) -> None:
    """Each running SRI role's config, as a FamilyConfig of family SV2 in `results`."""
    roles = [p for p in processes if (p.exe or p.cmdline) and is_sv2_role(p)][:MAX_PROCESSES]
    for proc in roles:
        path = config_path(proc)
        if not path:
            continue
        key = (FAMILY, path)
        if key not in results:
            results[key] = read_pool_config(path, proc, proc_root, found)
        config = results[key]
        if config is not None and all(r.pid != proc.pid for r in config.readers):
            config.readers.append(ConfigReader(pid=proc.pid, via="arg"))


def read_pool_config(path: str, proc: ProcessInfo, proc_root: str, found: Found) -> FamilyConfig | None:
    opened = read_as_process(path, proc, proc_root, found, MAX_BYTES)
    if opened is None:
        return None
    import tomllib      # here: most hosts run no pool, and the import is a quiet scan's cost
    try:
        data = tomllib.loads(opened.data.decode("utf-8", "replace"))
    except tomllib.TOMLDecodeError:
        return None
    facts = pool_facts(data)
    if facts is None:
        return None
    owner = owner_name(opened.info.st_uid)
    keys, endpoints, payouts, network = facts
    return FamilyConfig(path=cap(path, 1024), family=FAMILY, owner=owner, keys=keys,
                        urls=[cap(e, 300) for e in endpoints], logins=[cap(p, 200) for p in payouts],
                        network=network[:64])


def pool_facts(data: dict[str, Any]) -> tuple[list[str], list[str], list[str], str] | None:
    """(keys seen, role-tagged endpoints, payout addresses, explicit network) of an SRI config; None when the
    TOML is not one (none of the SRI keys)."""
    known = ("authority_public_key", "listen_address", "coinbase_outputs", "coinbase_reward_script", "tp_address",
             "template_provider_type", "upstream_address", "upstreams", "downstream_address", "listen_jd_address")
    keys = [k for k in known if k in data]
    if not keys:
        return None
    endpoints: list[str] = []

    def add(role: str, host: Any, port: Any = None) -> None:
        if isinstance(host, str) and host and len(endpoints) < MAX_VALUES:
            text = f"{host}:{port}" if isinstance(port, int) and ":" not in host.rsplit("]", 1)[-1] else host
            endpoints.append(f"{role} {text}")

    add("listen", data.get("listen_address"))
    add("template", data.get("tp_address"))
    providers = data.get("template_provider_type")
    network = ""
    if isinstance(providers, dict):
        for settings in providers.values():
            if isinstance(settings, dict):
                add("template", settings.get("address"))
                network = network or str(settings.get("network", "") or "")
    network = network or str(data.get("network", "") or "")
    add("upstream", data.get("upstream_address"), data.get("upstream_port"))
    upstreams = data.get("upstreams")
    for upstream in upstreams if isinstance(upstreams, list) else []:
        if isinstance(upstream, dict):
            add("upstream", upstream.get("address"), upstream.get("port"))
            add("upstream", upstream.get("pool_address"), upstream.get("pool_port"))
            add("upstream", upstream.get("jds_address") or upstream.get("jd_address"), upstream.get("jds_port"))
    payouts = []
    script = data.get("coinbase_reward_script")
    if isinstance(script, str) and script.startswith("addr(") and script.endswith(")"):
        payouts.append(script[5:-1])
    return keys, endpoints, payouts, network
