"""A throwaway PostgreSQL cluster for the store tests.

The cluster lives in a fresh directory under ``/tmp`` owned by the ``postgres`` user (PostgreSQL
refuses to run as root, so ``initdb`` and ``pg_ctl`` run through ``runuser -u postgres --``),
listens only on a Unix socket in that directory (no TCP port at all), trusts local connections,
and is stopped and deleted by :meth:`PgCluster.destroy`.

If no server binaries are installed and we are root with ``apt-get``, :func:`ensure_postgres`
installs the Debian ``postgresql`` package and then stops the default cluster(s) the package
starts, so nothing is left running.
"""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["PgCluster", "ensure_postgres", "postgres_skip_reason", "start_cluster"]

_PORT = 5432  # Only names the socket file (.s.PGSQL.5432) inside our private directory.


def _bindir() -> Path | None:
    """The newest ``/usr/lib/postgresql/<ver>/bin`` holding ``initdb`` (Debian layout)."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    return Path(initdb).resolve().parent if initdb else None


def _stop_default_clusters() -> None:
    """Stop the clusters the Debian package started (``pg_lsclusters`` → ``pg_ctlcluster``)."""
    if shutil.which("pg_lsclusters") is None:
        return
    listing = subprocess.run(
        ["pg_lsclusters", "--no-header"], capture_output=True, text=True, check=False
    ).stdout
    for line in listing.splitlines():
        parts = line.split()
        if len(parts) >= 4 and parts[3].startswith("online"):
            subprocess.run(["pg_ctlcluster", parts[0], parts[1], "stop"], check=False)


def ensure_postgres() -> Path | None:
    """The server binaries, installing the Debian package first if needed (root only)."""
    bindir = _bindir()
    if bindir is not None or os.geteuid() != 0 or shutil.which("apt-get") is None:
        return bindir
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    result = subprocess.run(
        ["apt-get", "install", "-y", "postgresql"], env=env, capture_output=True, check=False
    )
    _stop_default_clusters()
    return _bindir() if result.returncode == 0 else None


def postgres_skip_reason() -> str | None:
    """Why the PostgreSQL tests cannot run here, or ``None``."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "PostgreSQL tests need psycopg (pip install 'psycopg[binary]')"
    if os.geteuid() != 0:
        return "PostgreSQL tests need root (the cluster runs as the postgres user via runuser)"
    if shutil.which("runuser") is None:
        return "PostgreSQL tests need runuser"
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        return "PostgreSQL tests need a postgres user (apt-get install -y postgresql)"
    if ensure_postgres() is None:
        return "PostgreSQL server binaries not found (apt-get install -y postgresql)"
    return None


@dataclass
class PgCluster:
    """A running private cluster."""

    bindir: Path
    root: Path
    _counter: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def datadir(self) -> Path:
        return self.root / "data"

    def url(self, database: str) -> str:
        return f"postgresql://postgres@/{database}?host={self.root}&port={_PORT}"

    def _as_postgres(self, *argv: str) -> None:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", *argv],
            check=True,
            capture_output=True,
            cwd=self.root,
        )

    def start(self) -> None:
        self._as_postgres(
            str(self.bindir / "initdb"),
            "-D", str(self.datadir),
            "-U", "postgres",
            "-A", "trust",
            "-E", "UTF8",
            "--locale=C",
            "--no-sync",
        )  # fmt: skip
        options = f"-c listen_addresses='' -k {self.root} -p {_PORT} -c fsync=off"
        self._as_postgres(
            str(self.bindir / "pg_ctl"),
            "-D", str(self.datadir),
            "-l", str(self.root / "server.log"),
            "-o", options,
            "-w",
            "start",
        )  # fmt: skip

    def create_database(self) -> str:
        import psycopg

        name = f"ocgate_test_{next(self._counter)}"
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")  # type: ignore[arg-type]
        return name

    def drop_database(self, name: str) -> None:
        import psycopg

        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")  # type: ignore[arg-type]

    def log(self) -> str:
        path = self.root / "server.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def destroy(self) -> None:
        if (self.datadir / "postmaster.pid").exists():
            subprocess.run(
                ["runuser", "-u", "postgres", "--", str(self.bindir / "pg_ctl"),
                 "-D", str(self.datadir), "-m", "immediate", "-w", "stop"],
                check=False,
                capture_output=True,
            )  # fmt: skip
        shutil.rmtree(self.root, ignore_errors=True)


def start_cluster() -> PgCluster:
    """Create and start a private cluster (call :func:`postgres_skip_reason` first)."""
    bindir = ensure_postgres()
    assert bindir is not None
    root = Path(tempfile.mkdtemp(prefix="ocgate-pg-"))
    owner = pwd.getpwnam("postgres")
    os.chown(root, owner.pw_uid, owner.pw_gid)
    cluster = PgCluster(bindir=bindir, root=root)
    try:
        cluster.start()
    except BaseException:
        cluster.destroy()
        raise
    return cluster
