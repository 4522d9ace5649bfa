"""A private PostgreSQL cluster that a test may stop and start (the shared one on 5432 it may not).

``private_postgres``: a fresh cluster (``initdb`` in a temporary directory, trust authentication,
its Unix socket in that directory, TCP on a free 127.0.0.1 port, fsync off), started, and always
stopped and removed at teardown whatever the test did. ``stop()`` is ``pg_ctl stop -m fast``
(clients are disconnected, as when an operator stops the database), ``start()`` starts it again
on the same port with the same data. PostgreSQL refuses to run as root, so under root the
commands run as the ``postgres`` OS user (``runuser``), which owns the directory. The test is
skipped when no PostgreSQL server binaries are installed.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

__all__ = ["PrivatePostgres", "private_postgres"]


def _bindir() -> Path | None:
    """The newest installed PostgreSQL server's bin directory (Debian's layout, else the PATH)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


class PrivatePostgres:
    """One cluster: `url(dbname)`, `create_database`, `stop`, `start`, `destroy`."""

    def __init__(self, bindir: Path, port: int):
        self.bindir, self.port = bindir, port
        self.root = Path(tempfile.mkdtemp(prefix="mlgov-pg-"))  # not under pytest's root-only tmp dir
        self.data, self.log = self.root / "data", self.root / "postgres.log"
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            shutil.chown(self.root, "postgres", "postgres")

    def _run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if self._as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=self.root)
        if proc.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{' '.join(args[:2])} failed ({proc.returncode}): {proc.stderr.strip()}\n{log}")
        return proc

    def init(self) -> PrivatePostgres:
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync")
        return self.start()

    def start(self) -> PrivatePostgres:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "-t", "60", "start")
        return self

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    @property
    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def create_database(self, name: str) -> str:
        """A new, empty database; its URL."""
        import sqlalchemy as sa

        engine = sa.create_engine(self.url(), isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
        with engine.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        engine.dispose()
        return self.url(name)

    def destroy(self) -> None:
        try:
            if self.running:
                self.stop("immediate")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    """A started private cluster on a free port; stopped and deleted at teardown."""
    from tests.conftest import free_port

    bindir = _bindir()
    if bindir is None:
        pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl) installed")
    cluster = PrivatePostgres(bindir, free_port())
    try:
        cluster.init()
        yield cluster
    finally:
        cluster.destroy()
