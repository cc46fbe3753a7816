"""A throwaway PostgreSQL cluster on a unix socket in a temp directory (no TCP port).

PostgreSQL refuses to run as root, so as root the cluster is created and run as the
``postgres`` user from Debian's package; as any other user it runs as that user.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import psycopg


def postgres_bindir() -> str | None:
    """Directory of initdb/pg_ctl from Debian's packages (newest version), if installed."""
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4])
    )
    return os.path.dirname(candidates[-1]) if candidates else None


def postgres_missing() -> str | None:
    if postgres_bindir() is None:
        return "PostgreSQL server binaries are not installed (Debian package postgresql)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root but there is no postgres user"
    return None


class PrivatePostgres:
    """initdb + pg_ctl in a new directory under /tmp; ``new_database()`` gives fresh URLs.

    The directory is made here rather than taken from the caller because the
    ``postgres`` user must be able to reach it (pytest's temp dirs are root-only).
    """

    def __init__(self) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="etrn-pg-"))
        self.data = self.workdir / "data"
        bindir = postgres_bindir()
        if bindir is None:
            raise RuntimeError("PostgreSQL is not installed")
        self.bindir = bindir

    def _run(self, *argv: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        completed = subprocess.run(
            [*prefix, *argv], capture_output=True, text=True, timeout=120, check=False
        )
        if completed.returncode != 0:
            raise RuntimeError(
                f"{argv[0]} failed ({completed.returncode}): {completed.stderr.strip()}"
            )

    def start(self) -> PrivatePostgres:
        self.workdir.chmod(0o755)
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            os.chown(self.workdir, user.pw_uid, user.pw_gid)
        self._run(
            f"{self.bindir}/initdb",
            "-D",
            str(self.data),
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
        )
        self._run(
            f"{self.bindir}/pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(self.workdir / "log"),
            "-w",
            "-o",
            f"-k {self.workdir} -c listen_addresses='' -c fsync=off",
            "start",
        )
        return self

    def stop(self) -> None:
        if self.data.exists():
            self._run(
                f"{self.bindir}/pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop"
            )

    def remove(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)

    def base_url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@/{database}?host={self.workdir}"

    def new_database(self) -> str:
        """Create an empty database and return its URL."""
        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(
            host=str(self.workdir), user="postgres", dbname="postgres", autocommit=True
        ) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.base_url(name)
