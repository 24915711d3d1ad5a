"""Every coverage-guided fuzz target (fuzz/targets) runs for a bounded time; any finding fails.

The targets run through ``fuzz/run.py`` in subprocesses, two at a time, each for
``OCGATE_FUZZ_SECONDS`` seconds (default 4) over its seed corpus, which also holds the inputs of
past findings (``fuzz/corpus/<target>/crash-*``), so every fixed bug is replayed first. A failure
prints the reproducer: the input, its bytes and the command that replays it. Deselect with
``-m 'not fuzz'`` while iterating on something else.
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
FUZZ = ROOT / "fuzz"


def _runner() -> ModuleType:
    spec = importlib.util.spec_from_file_location("ocgate_fuzz_run", FUZZ / "run.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


RUNNER = _runner()
pytestmark = pytest.mark.fuzz

SECONDS = int(os.environ.get("OCGATE_FUZZ_SECONDS", "4"))
TARGETS: list[str] = RUNNER.target_names()
_UNTRUSTED = re.compile(r"def (\w+_untrusted)\(")


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    scratch = tmp_path_factory.mktemp("fuzz")
    results = RUNNER.run_all(TARGETS, SECONDS, scratch, jobs=2, timeout=10, rss_limit_mb=2048)
    return {o.name: o for o in results}


def test_atheris_is_installed() -> None:
    import atheris  # noqa: F401  # The dev extra; without it no target can run.


@pytest.mark.parametrize("name", TARGETS)
def test_target_finds_nothing(outcomes: dict[str, object], name: str) -> None:
    outcome: Any = outcomes[name]
    assert outcome.ok, outcome.report()
    assert outcome.runs, f"{name} ran no input:\n{outcome.report()}"


def test_every_untrusted_parser_has_a_target() -> None:
    """fuzz/README.md maps every ``*_untrusted`` function of src/ocgate to a target reaching it."""
    readme = (FUZZ / "README.md").read_text()
    found = {
        name
        for path in (ROOT / "src" / "ocgate").rglob("*.py")
        for name in _UNTRUSTED.findall(path.read_text())
    }
    missing = sorted(name for name in found if f"`{name}`" not in readme)
    assert not missing, f"add these parsers and their fuzz targets to fuzz/README.md: {missing}"
    for target in re.findall(r"`fuzz_(\w+)`", readme):
        assert target in TARGETS, f"fuzz/README.md names a target that does not exist: {target}"


def test_seed_corpora_exist_and_are_small() -> None:
    for name in TARGETS:
        seeds = list((FUZZ / "corpus" / name).glob("*"))
        assert seeds, f"no seed corpus for {name}: run fuzz/make_corpus.py"
        assert all(p.stat().st_size <= 16384 for p in seeds)
