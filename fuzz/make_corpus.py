"""Regenerate the seed corpora ``fuzz/corpus/<target>/`` from the real captures in tests/vectors.

Each target's ``seeds()`` turns the captures it understands (openconnect 9.01's CSTP frames and
CONNECT request, GnuTLS 3.7.9's DTLS datagrams, an AnyConnect NVM exporter's IPFIX messages, the
openconnect AggAuth bodies, ...) into inputs in that target's format. This script writes them as
``seed-NN`` files, replacing what was there, and refuses files over :data:`MAX_SEED_BYTES` (the
corpus lives in the repository)::

    .venv/bin/python fuzz/make_corpus.py            # every target
    .venv/bin/python fuzz/make_corpus.py cstp_frame  # one target
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

HERE = Path(__file__).resolve().parent
TARGETS = HERE / "targets"
CORPUS = HERE / "corpus"
MAX_SEED_BYTES = 16384


def target_names() -> list[str]:
    """Every target, by the name after ``fuzz_``."""
    return sorted(p.stem.removeprefix("fuzz_") for p in TARGETS.glob("fuzz_*.py"))


def load_target(name: str) -> ModuleType:
    """Import ``fuzz/targets/fuzz_<name>.py`` as a module (its ``main`` does not run)."""
    if str(TARGETS) not in sys.path:
        sys.path.insert(0, str(TARGETS))
    spec = importlib.util.spec_from_file_location(f"fuzz_{name}", TARGETS / f"fuzz_{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def write_corpus(name: str) -> int:
    """Write the seeds of one target; return how many."""
    module = load_target(name)
    seeds = list(module.seeds())
    directory = CORPUS / name
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.glob("seed-*"):
        old.unlink()
    for index, seed in enumerate(seeds):
        if len(seed) > MAX_SEED_BYTES:
            raise SystemExit(f"{name}: seed {index} has {len(seed)} bytes (> {MAX_SEED_BYTES})")
        module.test_one_input(seed)  # A seed must pass its own target.
        (directory / f"seed-{index:02d}").write_bytes(seed)
    return len(seeds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("targets", nargs="*", help="target names (default: all)")
    args = parser.parse_args(argv)
    for name in args.targets or target_names():
        print(f"{name}: {write_corpus(name)} seeds")
    return 0


if __name__ == "__main__":
    sys.exit(main())
