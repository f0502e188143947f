"""Build the C stand-in miner (cminer.c) into a temporary directory, optionally self-packed.

    build_cminer(tmp_path, port=pool.port)                          plain ELF, strings XOR-encrypted
    build_cminer(tmp_path, port=pool.port, pack="scrubbed")         code encrypted, no section headers
    build_cminer(tmp_path, port=pool.port, pack="upx-marks")        the same, carrying UPX's marks

Every string that would identify it (pool host and port, wallet, algorithm names, the Stratum
JSON templates, the user agent, the auditor names it hides from) goes into cminer_secrets.h
encrypted with a xorshift32 keystream; the binary decodes them into heap memory at run time.

Packing is a crypter, not a compressor: the packer encrypts the section `pk_text` (all code but
the stub) in the file and stamps the key; the stub decrypts it in memory. The file then holds a
high-entropy code segment, and with "scrubbed" no section table (like UPX output) and no mark;
"upx-marks" appends UPX's own marks (`UPX!` and its $Info/$Id lines) the way an unscrubbed UPX file
carries them. (UPX itself is not installable from apt or pip on the test hosts.)

Command line: `python -m tests.standin.cbuild OUT_DIR --port N [--pack scrubbed|upx-marks]`.
"""
from __future__ import annotations

import argparse
import secrets
import shutil
import struct
import subprocess
from pathlib import Path

SOURCE = Path(__file__).with_name("cminer.c")
# A public example address (the Monero general fund), the kind of wallet a miner logs in with.
DEFAULT_WALLET = "44AFFq5kSiGBoZ4NMDwYtN18obc8AemS33DBLWs3H7otXft3XjrpDtQGv7SqSsaBYBb98uNbr2VBBEt7f2wfn3RVGQBEP3A"
LOGIN = ('{"id":1,"jsonrpc":"2.0","method":"login","params":{"login":"%s","pass":"x","agent":"%s",'
         '"algo":["%s"]}}\n')
SUBMIT = '{"id":%llu,"jsonrpc":"2.0","method":"submit","params":{"id":"1","job_id":"1","nonce":"%08llx"}}\n'
AGENT = "XMRig/6.21.0 (Linux x86_64) libuv/1.44.2 gcc/12.2.0"
ALGOS = 'rx/0","cn/r","cn/half","argon2/chukwa'
UPX_MARKS = (b"\0$Info: This file is packed with the UPX executable packer http://upx.sf.net $\n\0"
             b"$Id: UPX 4.02 Copyright (C) 1996-2023 the UPX Team. All Rights Reserved. $\n\0"
             b"UPX!\x0d\x0a\x00\x00" + bytes(16) + b"UPX!")
PACK_MARKER = struct.pack("<I", 0x4B50434D)
PACKS = ("scrubbed", "upx-marks")


def keystream(seed: int, length: int) -> bytes:
    """xorshift32, as cminer.c's secret() and unpack() run it."""
    x = seed & 0xFFFFFFFF
    out = bytearray()
    for _ in range(length):
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        out.append(x & 0xFF)
    return bytes(out)


def secrets_header(key: int, host: str, port: int, wallet: str) -> str:
    values = {"HOST": host, "PORT": str(port), "SCHEME_TCP": "stratum+tcp://", "SCHEME_TLS": "stratum+ssl://",
              "WALLET": wallet, "AGENT": AGENT, "ALGOS": ALGOS, "LOGIN": LOGIN, "SUBMIT": SUBMIT,
              "AUDITOR1": "audit-agent", "AUDITOR2": "audit_agent"}
    lines = [f"#define SECRET_KEY 0x{key:08x}u", "struct sec { unsigned len; const unsigned char *bytes; };"]
    entries = []
    for index, (name, text) in enumerate(values.items()):
        plain = text.encode()
        stream = keystream(key ^ ((index * 0x9E3779B9) & 0xFFFFFFFF), len(plain))
        cipher = bytes(a ^ b for a, b in zip(plain, stream))
        lines.append(f"#define SEC_{name} {index}")
        lines.append(f"static const unsigned char sec_{index}[] = {{{', '.join(str(b) for b in cipher) or '0'}}};")
        entries.append(f"{{{len(plain)}, sec_{index}}}")
    lines.append(f"static const struct sec SECRETS[] = {{{', '.join(entries)}}};")
    return "\n".join(lines) + "\n"


def build_cminer(out_dir: str | Path, *, port: int, host: str = "127.0.0.1", wallet: str = DEFAULT_WALLET,
                 pack: str | None = None, name: str = "cminer") -> Path:
    """Compile cminer.c into out_dir/name (packed when `pack` is one of PACKS) and return its path."""
    if pack is not None and pack not in PACKS:
        raise ValueError(f"pack must be one of {PACKS}")
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise RuntimeError("no C compiler")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "cminer_secrets.h").write_text(secrets_header(secrets.randbits(32) | 1, host, port, wallet))
    target = out / name
    subprocess.run([compiler, "-O2", "-fno-reorder-blocks-and-partition", "-I", str(out), "-o", str(target),
                    str(SOURCE), "-lssl", "-lcrypto", "-lpthread", "-s"], check=True, capture_output=True)
    (out / "cminer_secrets.h").unlink()
    if pack:
        pack_in_place(target, marks=pack == "upx-marks")
    return target


def pack_in_place(path: Path, *, marks: bool) -> None:
    """Encrypt pk_text in the file, stamp the key, drop the section table; append UPX's marks if asked."""
    data = bytearray(path.read_bytes())
    start, size = section_range(bytes(data), b"pk_text")
    key = secrets.randbits(32) | 1
    stream = keystream(key, size)
    data[start:start + size] = bytes(a ^ b for a, b in zip(data[start:start + size], stream))
    stamp = data.find(PACK_MARKER)
    if stamp < 0 or data.find(PACK_MARKER, stamp + 1) >= 0:
        raise RuntimeError("pack stamp not found exactly once")
    data[stamp + 4:stamp + 8] = struct.pack("<I", key)
    struct.pack_into("<Q", data, 0x28, 0)                    # e_shoff: no section table, as UPX output
    struct.pack_into("<HHH", data, 0x3A, 0, 0, 0)            # e_shentsize, e_shnum, e_shstrndx
    if marks:
        data += UPX_MARKS
    path.write_bytes(bytes(data))


def section_range(elf: bytes, wanted: bytes) -> tuple[int, int]:
    """(file offset, size) of a named section of a 64-bit little-endian ELF."""
    shoff, = struct.unpack_from("<Q", elf, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", elf, 0x3A)
    names_at, = struct.unpack_from("<Q", elf, shoff + shstrndx * shentsize + 0x18)
    for index in range(shnum):
        header = shoff + index * shentsize
        name_at, = struct.unpack_from("<I", elf, header)
        end = elf.index(b"\0", names_at + name_at)
        if elf[names_at + name_at:end] == wanted:
            offset, size = struct.unpack_from("<QQ", elf, header + 0x18)
            return offset, size
    raise RuntimeError(f"section {wanted!r} not found")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("out_dir")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--pack", choices=PACKS)
    args = parser.parse_args()
    print(build_cminer(args.out_dir, port=args.port, host=args.host, pack=args.pack))
