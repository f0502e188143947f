"""Sign an AuditReport and check a signed report's JSON (Ed25519 through PyNaCl, i.e. libsodium).

The signature covers CONTEXT + the report's canonical JSON: every field, keys sorted, no spaces, ASCII
only (so lone surrogates and bidi characters are escapes, not bytes), with the `signature` block in it
minus its `value`. The machine id and key id are therefore signed too: a report cannot be moved to
another machine's row by editing them. Floats are written as Python writes them (shortest round trip),
so the JSON file read back gives the same bytes.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import json
from typing import Any

import msgspec
from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from audit_agent.model import AuditReport, ReportSignature

CONTEXT = b"audit-agent report v1\0"
ALGORITHM = "ed25519"


class Refused(ValueError):
    """A report the fleet will not count: the English reason (JSON, stderr), plus a code and facts that the
    fleet page phrases in its own language (reports/i18n/fleet.<lang>.yaml: fleet.refused.<code>)."""

    def __init__(self, code: str, message: str, **facts: str) -> None:
        super().__init__(message)
        self.code = code
        self.facts = facts


def key_id(key: VerifyKey) -> str:
    return hashlib.sha256(bytes(key)).hexdigest()[:16]


def canonical(data: dict[str, Any]) -> bytes:
    """What is signed: the report's JSON data with its signature block minus `value`, canonically."""
    signed = dict(data)
    block = signed.get("signature")
    if isinstance(block, dict):
        signed["signature"] = {k: v for k, v in block.items() if k != "value"}
    text = json.dumps(signed, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return CONTEXT + text.encode("ascii")


def sign_report(report: AuditReport, key: SigningKey, machine_id: str) -> AuditReport:
    """A copy of `report` carrying this host's signature."""
    block = ReportSignature(algorithm=ALGORITHM, key_id=key_id(key.verify_key), machine_id=machine_id)
    unsigned = msgspec.structs.replace(report, signature=block)
    signature = key.sign(canonical(unsigned.to_dict())).signature
    return msgspec.structs.replace(report, signature=msgspec.structs.replace(block, value=base64.b64encode(signature).decode()))


def signer(data: dict[str, Any]) -> ReportSignature | None:
    """The report's signature block as it claims (not verified); None when unsigned; ValueError when malformed."""
    block = data.get("signature")
    if block is None:
        return None
    if not isinstance(block, dict) or not all(isinstance(block.get(k), str) for k in
                                               ("algorithm", "key_id", "machine_id", "value")):
        raise Refused("malformed", "refused: malformed signature block (algorithm, key_id, machine_id and value "
                      "must be strings)")
    return ReportSignature(algorithm=block["algorithm"], key_id=block["key_id"], machine_id=block["machine_id"],
                           value=block["value"])


def verify(data: dict[str, Any], keys: dict[str, VerifyKey]) -> str:
    """The machine id of a report whose signature verifies with that machine's registered key;
    ValueError with a one-line reason (unsigned, unknown machine, wrong key, changed after signing)."""
    claimed = signer(data)
    if claimed is None:
        raise Refused("unsigned", "refused: the report is not signed (keys are registered, so every report must be)")
    if claimed.algorithm != ALGORITHM:
        raise Refused("algorithm", f"refused: unknown signature algorithm {claimed.algorithm[:20]!r}",
                      algorithm=claimed.algorithm[:20])
    machine = claimed.machine_id
    key = keys.get(machine)
    if key is None:
        raise Refused("unknown_machine", f"refused: signed by machine id {machine[:40]!r}, which has no registered key",
                      machine=machine[:40])
    if claimed.key_id != key_id(key):
        raise Refused("wrong_key", f"refused: signed with key {claimed.key_id[:16]!r}, not with the key registered "
                      f"for machine id {machine} ({key_id(key)})", key=claimed.key_id[:16], machine=machine,
                      registered=key_id(key))
    try:
        raw = base64.b64decode(claimed.value, validate=True)
        key.verify(canonical(data), raw)
    except (binascii.Error, BadSignatureError, ValueError):
        raise Refused("bad_signature", f"refused: BAD SIGNATURE: the report was changed after machine {machine} "
                      "signed it, or was not signed by its registered key", machine=machine) from None
    return machine
