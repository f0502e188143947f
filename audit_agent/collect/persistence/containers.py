"""Containers that come back by themselves: a runtime's restart policy, where its state is readable.

Docker keeps each container in /var/lib/docker/containers/ID/: hostconfig.json
holds `RestartPolicy.Name` (always, unless-stopped, on-failure) and
config.v2.json the name, image, entrypoint and command (Docker Engine source,
daemon/container: `container.toDisk` writes config.v2.json and
hostconfig.json). Podman keeps the OCI spec of each container in
/var/lib/containers/storage/overlay-containers/ID/userdata/config.json
(process.args); its restart policies live in libpod's database, so podman
containers are listed by what they run, with the restart policy unknown.
"""
from __future__ import annotations

import json
from typing import Any

from audit_agent.collect.persistence.fs import Tree
from audit_agent.collect.persistence.state import Collected

DOCKER = "var/lib/docker/containers"
PODMAN = "var/lib/containers/storage/overlay-containers"
MAX_JSON_BYTES = 1024 * 1024
MAX_CONTAINERS = 2000
RESTARTING = {"always", "unless-stopped", "on-failure"}


def read_containers(tree: Tree, out: Collected) -> None:
    for name, kind in tree.listdir(DOCKER)[:MAX_CONTAINERS]:
        if kind == "dir":
            _docker(tree, out, f"{DOCKER}/{name}")
    for name, kind in tree.listdir(PODMAN)[:MAX_CONTAINERS]:
        if kind == "dir":
            _podman(tree, out, f"{PODMAN}/{name}/userdata/config.json")


def _docker(tree: Tree, out: Collected, folder: str) -> None:
    host = tree.read(f"{folder}/hostconfig.json", MAX_JSON_BYTES)
    policy = _get(_json(host.data if host else b""), "RestartPolicy", "Name")
    if host is None or policy not in RESTARTING:
        return
    config = tree.read(f"{folder}/config.v2.json", MAX_JSON_BYTES)
    data = _json(config.data if config else b"")
    found = data.get("Config")
    inner: dict[str, Any] = found if isinstance(found, dict) else {}
    argv = [*_words(inner.get("Entrypoint")), *_words(inner.get("Cmd"))]
    user = str(inner.get("User") or "root")[:64]
    text = (f"restart={policy} name={str(data.get('Name', ''))[:200].lstrip('/')} "
            f"image={str(inner.get('Image', ''))[:300]} command={' '.join(argv)[:2000]}")
    out.add(config or host, tree.scope, "container", "docker restart policy", "restart", [(1, text, user)])


def _podman(tree: Tree, out: Collected, rel: str) -> None:
    read = tree.read(rel, MAX_JSON_BYTES)
    if read is None:
        return
    process = _json(read.data).get("process")
    argv = _words(process.get("args")) if isinstance(process, dict) else []
    if argv:
        text = f"restart=unknown command={' '.join(argv)[:2000]}"
        out.add(read, tree.scope, "container", "podman container", "restart", [(1, text, "root")])


def _json(data: bytes) -> dict[str, Any]:
    try:
        value = json.loads(data.decode("utf-8", "replace")) if data else {}
    except (ValueError, RecursionError):
        return {}
    return value if isinstance(value, dict) else {}


def _get(data: dict[str, Any], *keys: str) -> str:
    node: Any = data
    for key in keys:
        node = node.get(key) if isinstance(node, dict) else None
    return node if isinstance(node, str) else ""


def _words(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value[:1000]]
    if isinstance(value, list):
        return [str(v)[:1000] for v in value[:64] if isinstance(v, (str, int, float))]
    return []
