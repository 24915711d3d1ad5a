"""The SQLite database and the directories made for it are private (0600 / 0700), any umask."""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from ocgate.nvm._records import FlowRecord
from ocgate.nvm._serve import open_nvm_store
from ocgate.nvm.store._sqlite import create_private_file, make_private_dirs


@pytest.fixture
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    value: int = request.param
    old = os.umask(value)
    try:
        yield value
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("umask", [0o000, 0o022, 0o277], indirect=True)
def test_database_directories_and_files_are_private(tmp_path: Path, umask: int) -> None:
    tmp_path.chmod(0o755)
    base = tmp_path / "var" / "lib" / "ocgate"
    path = base / "nvm.sqlite"

    async def scenario() -> list[tuple[str, int]]:
        store = await open_nvm_store(f"sqlite://{path}")
        try:
            await store.write_batch([FlowRecord(time_start=1.0, time_end=2.0, exporter="udp://x")])
            await store.flush()
            files = sorted(p for p in base.iterdir())
            return [(p.name, mode(p)) for p in files]
        finally:
            await store.close()

    files = asyncio.run(scenario())
    names = [name for name, _ in files]
    assert {"nvm.sqlite", "nvm.sqlite-wal", "nvm.sqlite-shm"} <= set(names)
    assert all(m == 0o600 for _, m in files), files
    for directory in (base, base.parent, base.parent.parent):
        assert mode(directory) == 0o700, directory
    assert mode(tmp_path) == 0o755  # What existed keeps its mode.


def test_existing_files_keep_their_mode(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    path.write_bytes(b"")
    path.chmod(0o640)
    assert not create_private_file(str(path))
    assert mode(path) == 0o640
    existing = tmp_path / "existing"
    existing.mkdir()
    existing.chmod(0o755)
    make_private_dirs(str(existing / "new"))
    assert (mode(existing), mode(existing / "new")) == (0o755, 0o700)


def test_a_file_in_the_way_is_an_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(FileExistsError):
        make_private_dirs(str(blocker / "nvm"))
    with pytest.raises(FileNotFoundError):
        create_private_file(str(tmp_path / "missing" / "db.sqlite"))
