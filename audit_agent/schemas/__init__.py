"""JSON Schema (draft 2020-12) for the Snapshot and AuditReport, generated from their Structs (model.py).

The published files snapshot.schema.json and report.schema.json ship in the
package; `python -m audit_agent.schemas --write` regenerates them and a test
checks they match the model.
"""
from __future__ import annotations

import enum
import json
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

import msgspec

from audit_agent.model import AuditReport, Snapshot

SCHEMA_DIR = Path(__file__).resolve().parent
PUBLISHED = {"snapshot.schema.json": Snapshot, "report.schema.json": AuditReport}


def build_schema(cls: type, title: str) -> dict[str, Any]:
    definitions: dict[str, Any] = {}
    root = _object_schema(cls, definitions)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": f"https://audit-agent.invalid/schemas/{title}.schema.json", "title": title,
            **root, "$defs": definitions}


def _object_schema(cls: type, definitions: dict[str, Any]) -> dict[str, Any]:
    hints = get_type_hints(cls)
    fields = msgspec.structs.fields(cls)
    properties = {f.name: _type_schema(hints[f.name], definitions) for f in fields if not f.name.startswith("_")}
    required = [f.name for f in fields if f.required]
    schema: dict[str, Any] = {"type": "object", "properties": properties, "additionalProperties": False}
    if required:
        schema["required"] = required
    return schema


def _type_schema(hint: Any, definitions: dict[str, Any]) -> dict[str, Any]:
    origin, args = get_origin(hint), get_args(hint)
    if args and type(None) in args and origin not in (list, dict):
        inner = [a for a in args if a is not type(None)][0]
        return {"anyOf": [_type_schema(inner, definitions), {"type": "null"}]}
    if origin is list:
        return {"type": "array", "items": _type_schema(args[0], definitions)}
    if origin is dict:
        return {"type": "object", "additionalProperties": _type_schema(args[1], definitions)}
    if isinstance(hint, type) and issubclass(hint, msgspec.Struct):
        name = hint.__name__
        if name not in definitions:
            definitions[name] = {}
            definitions[name] = _object_schema(hint, definitions)
        return {"$ref": f"#/$defs/{name}"}
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return {"type": "string", "enum": [member.value for member in hint]}
    simple = {str: "string", int: "integer", float: "number", bool: "boolean"}
    if hint in simple:
        return {"type": simple[hint]}
    return {}


def published_schema(name: str) -> dict[str, Any]:
    schema: dict[str, Any] = json.loads((SCHEMA_DIR / name).read_text(encoding="utf-8"))
    return schema


def write_schemas() -> None:
    for filename, cls in PUBLISHED.items():
        schema = build_schema(cls, filename.split(".")[0])
        (SCHEMA_DIR / filename).write_text(json.dumps(schema, indent=2) + "\n", encoding="utf-8")

