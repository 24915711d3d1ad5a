"""Regenerate lzs_openconnect.json with openconnect's own LZS code (see SOURCES.md).

Usage: python make_lzs_vectors.py PATH/TO/openconnect/lzs.c

The script compiles that file with a tiny driver (two stand-in headers supply what lzs.c takes from
openconnect's build) and lets openconnect's ``lzs_compress`` produce every vector; each is checked
with openconnect's ``lzs_decompress`` before it is written. ocgate's code is not used here.
"""

from __future__ import annotations

import json
import random
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
_DRIVER = r"""
#include <stdio.h>
#include <stdlib.h>
#include "openconnect-internal.h"
int main(int argc, char **argv) {
  static unsigned char in[70000], out[140000];
  int n = fread(in, 1, sizeof in, stdin);
  int r = argv[1][0] == 'c' ? lzs_compress(out, sizeof out, in, n)
                             : lzs_decompress(out, atoi(argv[2]), in, n);
  if (r < 0) { fprintf(stderr, "%d\n", r); return 2; }
  fwrite(out, 1, r, stdout);
  return 0;
}
"""
_HEADER = """
#include <stdint.h>
struct oc_packed_uint16_t { uint16_t d; } __attribute__((packed));
int lzs_decompress(unsigned char *dst, int dstlen, const unsigned char *src, int srclen);
int lzs_compress(unsigned char *dst, int dstlen, const unsigned char *src, int srclen);
"""


def _build(lzs_c: Path, work: Path) -> Path:
    (work / "config.h").write_text("")
    (work / "openconnect-internal.h").write_text(_HEADER)
    (work / "main.c").write_text(_DRIVER)
    tool = work / "lzstool"
    subprocess.run(
        ["gcc", "-O2", f"-I{work}", "-o", str(tool), str(work / "main.c"), str(lzs_c)], check=True
    )
    return tool


def _cases() -> list[tuple[str, bytes]]:
    rng = random.Random(20261207)

    def ping(n: int) -> bytes:
        header = struct.pack(
            "!BBHHHBBH4s4s", 0x45, 0, 28 + n, rng.randrange(65536), 0x4000, 64, 1, 0,
            bytes([10, 0, 0, 2]), bytes([10, 0, 0, 1]),
        )  # fmt: skip
        return header + bytes([8, 0, 0, 0, 0, 1, 0, 1]) + bytes((0x10 + i) & 0xFF for i in range(n))

    http = b"GET / HTTP/1.1\r\nHost: example.test\r\nAccept: */*\r\nAccept: */*\r\n\r\n"
    cases = [
        ("empty", b""), ("one byte", b"A"), ("two bytes", b"AB"), ("three bytes", b"ABC"),
        ("two-byte repeat at the end", b"ABxAB"), ("run of 4", b"aaaa"),
        ("text", b"hello hello hello hello world"),
        ("zeros 1500 (long length nibbles)", bytes(1500)),
        ("ping 56", ping(56)), ("ping 1400", ping(1400)),
        ("http-like", http * 5),
        ("random 200 (incompressible)", bytes(rng.randrange(256) for _ in range(200))),
        ("11-bit offsets", bytes(rng.randrange(256) for _ in range(1000)) * 2),
        ("offset 2047 edge", bytes(rng.randrange(256) for _ in range(2047)) + b"\x01\x02\x03"),
    ]  # fmt: skip
    base = bytes(rng.randrange(256) for _ in range(2047))
    cases.append(("match exactly 2047 back", base + base[:40]))
    for _ in range(12):
        n = rng.randrange(40, 1500)
        alpha = rng.choice([2, 3, 4, 8, 16])
        data = bytes(rng.randrange(alpha) for _ in range(n))
        cases.append((f"small alphabet {alpha}, {n} bytes", data))
    return cases


def main(lzs_c: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tool = _build(lzs_c, Path(tmp))

        def run(*args: str, data: bytes) -> bytes:
            cmd = [str(tool), *args]
            return subprocess.run(cmd, input=data, capture_output=True, check=True).stdout

        vectors = []
        for name, plain in _cases():
            packed = run("c", data=plain)
            assert run("d", "70000", data=packed) == plain, name
            vectors.append({"name": name, "plain": plain.hex(), "lzs": packed.hex()})
    document = {"source": "openconnect lzs.c, see SOURCES.md", "vectors": vectors}
    (HERE / "lzs_openconnect.json").write_text(json.dumps(document, indent=1) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
