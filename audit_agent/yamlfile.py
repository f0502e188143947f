"""YAML loading that remembers line numbers, so every error can say file:line."""
from __future__ import annotations

from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """Bad configuration or input data; the message is one line, starting with file:line."""


class LineDict(dict[Any, Any]):
    """A mapping from YAML that knows the line it started on and the line of each key (1-based)."""
    line: int = 0
    key_lines: dict[Any, int] | None = None


_LOADER: Any = None


def line_loader() -> Any:
    """The YAML loader that records line numbers; PyYAML is imported on first use, since a scan whose rule
    pack comes from the pack cache (rules/pack_cache.py) and that has no config file parses no YAML at all."""
    global _LOADER
    if _LOADER is None:
        import yaml

        # libyaml's C parser when PyYAML was built with it (about 10x faster on the rule packs), same marks and errors.
        class LineLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
            pass

        LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
        LineLoader.add_constructor("tag:yaml.org,2002:timestamp", _construct_timestamp)
        _LOADER = LineLoader
    return _LOADER


def _construct_mapping(loader: Any, node: Any) -> LineDict:
    mapping = LineDict()
    mapping.line = node.start_mark.line + 1
    mapping.key_lines = {}
    loader.flatten_mapping(node)
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, (str, int, float, bool)) and key is not None:
            raise ConfigError(f"line {key_node.start_mark.line + 1}: mapping key must be a scalar")
        mapping[key] = loader.construct_object(value_node, deep=True)
        mapping.key_lines[key] = key_node.start_mark.line + 1
    return mapping


def _construct_timestamp(loader: Any, node: Any) -> Any:
    """A date such as 2026-02-30 looks like a timestamp but is none: say where, not a traceback."""
    import yaml
    try:
        return yaml.constructor.SafeConstructor.construct_yaml_timestamp(loader, node)
    except ValueError as exc:
        why = "time zone offset out of range" if "offset" in str(exc) else str(exc)
        raise ConfigError(f"line {node.start_mark.line + 1}: {node.value!r} is not a real date ({why})") from None


def load_yaml(path: str | Path) -> Any:
    """Parse one YAML file; any problem becomes a ConfigError 'path:line: message'."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {getattr(exc, 'strerror', None) or exc}") from None
    return parse_yaml(text, path)


def parse_yaml(text: str, path: str | Path) -> Any:
    """Parse YAML text read from `path` (named in errors)."""
    loader = line_loader()
    import yaml
    try:
        return yaml.load(text, Loader=loader)  # noqa: S506 - SafeLoader subclass
    except ConfigError as exc:
        raise ConfigError(f"{path}:{str(exc).removeprefix('line ')}") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 0
        started = ""
        if exc.context and exc.context_mark and exc.problem_mark and exc.context_mark.line != exc.problem_mark.line:
            started = f" ({exc.context} started at line {exc.context_mark.line + 1})"
        raise ConfigError(f"{path}:{line}: invalid YAML: {exc.problem or exc.context}{started}") from None
    except yaml.reader.ReaderError as exc:       # a character YAML does not allow (NUL, other controls)
        line = text.count("\n", 0, max(exc.position, 0)) + 1
        raise ConfigError(f"{path}:{line}: invalid YAML: character {exc.character!r} is not allowed") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {' '.join(str(exc).split())}") from None
    except RecursionError:
        raise ConfigError(f"{path}: invalid YAML: nested too deeply") from None


def line_of(node: Any, default: int = 0) -> int:
    return getattr(node, "line", default)


def key_line(mapping: Any, key: Any, default: int = 0) -> int:
    """The line of `key` in a YAML mapping (where a bad value is), else the mapping's own line."""
    lines = getattr(mapping, "key_lines", None) or {}
    return lines.get(key) or line_of(mapping, default)


def load_data(path: str | Path) -> Any:
    """A shipped data file (detect/checks.yaml, reports/i18n/*.yaml) as plain data: from the state directory's
    data cache when it holds these bytes (rules/pack_cache.py), so a scan imports no YAML; else parsed with
    libyaml's C loader where PyYAML has it (same result as safe_load, about 10x faster)."""
    from audit_agent.rules.active import state_dir
    from audit_agent.rules.pack_cache import cached_data
    return cached_data(Path(path), state_dir(), _parse_data)


def _parse_data(data: bytes) -> Any:
    import yaml
    return yaml.load(data.decode("utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # noqa: S506 - safe loaders
