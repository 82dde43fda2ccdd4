"""A throwaway PostgreSQL cluster: initdb in a temp dir, pg_ctl start on a free port, stop + delete.

PostgreSQL refuses to run as root; when the tests run as root (CI does), the server binaries run as
the ``postgres`` user that Debian's postgresql-15 package creates (or SUNRISE_PG_OS_USER).
The server binaries come from $PG_BINDIR, /usr/lib/postgresql/<version>/bin, or the PATH.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from tests.support.watchdog import start_watchdog, stop_watchdog


class PostgresUnavailable(RuntimeError):
    pass


def find_bindir() -> Path | None:
    candidates = []
    if os.environ.get("PG_BINDIR"):
        candidates.append(Path(os.environ["PG_BINDIR"]))
    versions = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"),
        key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit() else 0,
        reverse=True,
    )
    candidates += [Path(p) for p in versions]
    for name in ("pg_ctl", "initdb"):
        found = shutil.which(name)
        if found:
            candidates.append(Path(found).resolve().parent)
    for c in candidates:
        if (c / "initdb").exists() and (c / "pg_ctl").exists() and (c / "postgres").exists():
            return c
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresCluster:
    """One cluster; ``with PostgresCluster() as pg:`` or start()/stop()."""

    def __init__(self, user: str = "sunrise", password: str | None = None):
        self.bindir = find_bindir()
        if self.bindir is None:
            raise PostgresUnavailable(
                "PostgreSQL server binaries not found (install Debian postgresql-15, or set PG_BINDIR)"
            )
        self.user = user
        self.password = password or secrets.token_hex(12)
        self.host = "127.0.0.1"
        self.port = 0
        self.base: Path | None = None
        self._process_user: tuple[int, int] | None = None
        self._started = False
        self._watchdog = None

    # -- lifecycle --------------------------------------------------------------------------
    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        kwargs = {}
        if self._process_user:
            uid, gid = self._process_user
            kwargs = {"user": uid, "group": gid, "extra_groups": []}
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "HOME": str(self.base)}
        proc = subprocess.run(
            [str(self.bindir / args[0]), *args[1:]], capture_output=True, text=True, env=env, cwd=self.base, **kwargs
        )
        if check and proc.returncode != 0:
            log = self.log_tail()
            raise PostgresUnavailable(
                f"{args[0]} failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}\n{log}"
            )
        return proc

    def log_tail(self, lines: int = 30) -> str:
        log = self.base / "server.log" if self.base else None
        if log and log.exists():
            return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def start(self) -> PostgresCluster:
        self.base = Path(tempfile.mkdtemp(prefix="sunrise-pg-"))
        if os.geteuid() == 0:
            name = os.environ.get("SUNRISE_PG_OS_USER", "postgres")
            try:
                entry = pwd.getpwnam(name)
            except KeyError as exc:
                raise PostgresUnavailable(
                    f"running as root and there is no {name!r} user to run PostgreSQL as"
                ) from exc
            self._process_user = (entry.pw_uid, entry.pw_gid)
            os.chown(self.base, entry.pw_uid, entry.pw_gid)
        self.base.chmod(0o700)
        pwfile = self.base / "pwfile"
        pwfile.write_text(self.password + "\n")
        if self._process_user:
            os.chown(pwfile, *self._process_user)
        self._run(
            "initdb",
            "-D",
            str(self.base / "data"),
            "-U",
            self.user,
            f"--pwfile={pwfile}",
            "-E",
            "UTF8",
            "--locale=C",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
        )
        pwfile.unlink()
        self.port = free_port()
        options = (
            f"-p {self.port} -k {self.base} -c listen_addresses={self.host} -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=100"
        )
        self._watchdog = start_watchdog(  # immediate shutdown of the postmaster, then the directory
            f"kill -QUIT $(head -1 {self.base}/data/postmaster.pid 2>/dev/null) 2>/dev/null; "
            f"sleep 2; rm -rf {self.base}"
        )
        self._run(
            "pg_ctl",
            "-D",
            str(self.base / "data"),
            "-l",
            str(self.base / "server.log"),
            "-o",
            options,
            "-w",
            "-t",
            "60",
            "start",
        )
        self._started = True
        self._wait_ready()
        return self

    def _wait_ready(self, timeout: float = 30.0) -> None:
        import psycopg2

        deadline = time.monotonic() + timeout
        while True:
            try:
                psycopg2.connect(self.dsn("postgres")).close()
                return
            except psycopg2.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def stop(self) -> None:
        if self.base is None:
            return
        try:
            if self._started:
                self._run("pg_ctl", "-D", str(self.base / "data"), "-m", "fast", "-w", "-t", "60", "stop", check=False)
                self._started = False
        finally:
            stop_watchdog(self._watchdog)
            self._watchdog = None
            shutil.rmtree(self.base, ignore_errors=True)
            self.base = None

    def __enter__(self) -> PostgresCluster:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- use --------------------------------------------------------------------------------
    def dsn(self, db: str) -> str:
        return f"host={self.host} port={self.port} user={self.user} password={self.password} dbname={db}"

    def url(self, db: str, driver: str = "postgresql+psycopg2") -> str:
        return f"{driver}://{self.user}:{self.password}@{self.host}:{self.port}/{db}"

    def create_database(self, name: str) -> str:
        """A fresh, empty database; returns its SQLAlchemy URL."""
        import psycopg2
        from psycopg2 import sql

        conn = psycopg2.connect(self.dsn("postgres"))
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
                cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        finally:
            conn.close()
        return self.url(name)

    def dagster_env(self, db: str) -> dict[str, str]:
        """The variables deploy/dagster.yaml reads, pointing at database ``db`` of this cluster."""
        return {
            "DAGSTER_PG_HOST": self.host,
            "DAGSTER_PG_PORT": str(self.port),
            "DAGSTER_PG_USER": self.user,
            "DAGSTER_PG_PASSWORD": self.password,
            "DAGSTER_PG_DB": db,
        }
