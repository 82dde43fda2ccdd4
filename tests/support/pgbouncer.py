"""A throwaway PgBouncer in front of a throwaway PostgreSQL cluster (tests.support.postgres).

dagster-postgres opens a new connection for every storage call outside the webserver (SQLAlchemy's
NullPool). Against PostgreSQL directly each one is a backend fork plus a SCRAM exchange; through
PgBouncer it is a handshake with the pooler, which hands over one of its open server connections.

Its configuration is the production pooler's, deploy/pgbouncer.ini (why MD5 from clients on the
loopback interface and SCRAM to PostgreSQL, why session pooling: see there), with local places.

Like the cluster, PgBouncer refuses to run as root: it is then started with ``-u postgres``
(or SUNRISE_PG_OS_USER). The binary comes from $PGBOUNCER, the PATH or /usr/sbin (Debian's
``pgbouncer`` package).
"""

from __future__ import annotations

import configparser
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.support.postgres import PostgresCluster, free_port
from tests.support.watchdog import start_watchdog, stop_watchdog

# The production pooler's configuration (deploy/README.md); the tests run it with local places.
DEPLOY_CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "pgbouncer.ini"


class PgBouncerUnavailable(RuntimeError):
    pass


def find_pgbouncer() -> Path | None:
    for candidate in (os.environ.get("PGBOUNCER"), shutil.which("pgbouncer"), "/usr/sbin/pgbouncer"):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return Path(candidate)
    return None


class PgBouncer:
    """PgBouncer on a free port, pooling every database of ``cluster`` for its user:
    ``with PgBouncer(cluster) as bouncer:`` or start()/stop(). Its admin console (database
    ``pgbouncer``) answers SHOW STATS / SHOW POOLS for the same user."""

    def __init__(self, cluster: PostgresCluster, *, pool_size: int = 20):
        self.binary = find_pgbouncer()
        if self.binary is None:
            raise PgBouncerUnavailable("pgbouncer not found (install Debian's pgbouncer, or set PGBOUNCER)")
        self.cluster = cluster
        self.pool_size = pool_size
        self.host = "127.0.0.1"
        self.port = 0
        self.base: Path | None = None
        self.process: subprocess.Popen | None = None
        self._watchdog = None

    def start(self) -> PgBouncer:
        self.base = Path(tempfile.mkdtemp(prefix="sunrise-pgbouncer-"))
        self.port = free_port()
        run_as: list[str] = []
        owner = None
        if os.geteuid() == 0:
            name = os.environ.get("SUNRISE_PG_OS_USER", "postgres")
            try:
                entry = pwd.getpwnam(name)
            except KeyError as exc:
                raise PgBouncerUnavailable(
                    f"running as root and there is no {name!r} user to run PgBouncer as"
                ) from exc
            run_as, owner = ["-u", name], (entry.pw_uid, entry.pw_gid)
        # The user's password in plain text, readable by PgBouncer's user only: PgBouncer logs in to
        # PostgreSQL with it (SCRAM, once per pooled server connection) and checks its clients
        # against it with MD5 challenge-response. A SCRAM handshake costs the client ~2.5 ms of CPU
        # (PBKDF2, 4096 rounds) and PgBouncer as much again; Dagster's storages connect once per call,
        # so the pooler listens on the loopback interface only and the handshake that is paid per
        # call is the cheap one (deploy/pgbouncer.ini, the production sidecar's configuration).
        userlist = self.base / "userlist.txt"
        userlist.write_text(f'"{self.cluster.user}" "{self.cluster.password}"\n')
        ini = self.base / "pgbouncer.ini"
        self._write_config(ini, userlist)
        for path in (userlist, ini):
            path.chmod(0o600)
        self.base.chmod(0o700)
        if owner:
            for path in (self.base, userlist, ini):
                os.chown(path, *owner)
        self._watchdog = start_watchdog(
            f"kill -TERM $(cat {self.base}/pgbouncer.pid 2>/dev/null) 2>/dev/null; sleep 1; rm -rf {self.base}"
        )
        self.process = subprocess.Popen(
            [str(self.binary), *run_as, str(ini)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=self.base,
            start_new_session=True,
        )
        self._wait_ready()
        return self

    def _write_config(self, ini: Path, userlist: Path) -> None:
        """deploy/pgbouncer.ini, the production pooler's configuration, with this machine's places:
        every database of the cluster, a free port, files in the temp dir, the user as admin (for
        SHOW), no TLS to the local cluster."""
        config = configparser.ConfigParser(interpolation=None, comment_prefixes=(";", "#"))
        config.read_string(DEPLOY_CONFIG.read_text())
        config.remove_section("databases")
        config.add_section("databases")
        config.set("databases", "*", f"host={self.cluster.host} port={self.cluster.port}")
        settings = config["pgbouncer"]
        settings.update(
            {
                "listen_addr": self.host,
                "listen_port": str(self.port),
                "auth_file": str(userlist),
                "admin_users": self.cluster.user,
                "default_pool_size": str(self.pool_size),
                "server_tls_sslmode": "disable",
                "logfile": str(self.base / "pgbouncer.log"),
                "pidfile": str(self.base / "pgbouncer.pid"),
            }
        )
        with ini.open("w") as f:
            config.write(f)

    def _wait_ready(self, timeout: float = 30.0) -> None:
        import psycopg2

        deadline = time.monotonic() + timeout
        while True:
            if self.process is not None and self.process.poll() is not None:
                log = self.log_tail()
                self.stop()
                raise PgBouncerUnavailable(
                    f"pgbouncer exited ({self.process.returncode if self.process else '?'}):\n{log}"
                )
            try:
                psycopg2.connect(self.dsn("postgres")).close()
                return
            except psycopg2.OperationalError:
                if time.monotonic() > deadline:
                    log = self.log_tail()
                    self.stop()
                    raise PgBouncerUnavailable(f"pgbouncer did not accept connections in {timeout} s:\n{log}") from None
                time.sleep(0.1)

    def log_tail(self, lines: int = 30) -> str:
        log = self.base / "pgbouncer.log" if self.base else None
        if log and log.exists():
            return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop(self) -> None:
        process, self.process = self.process, None
        try:
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)  # immediate shutdown
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(10)
        finally:
            stop_watchdog(self._watchdog)
            self._watchdog = None
            if self.base is not None:
                shutil.rmtree(self.base, ignore_errors=True)
                self.base = None

    def __enter__(self) -> PgBouncer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- use --------------------------------------------------------------------------------
    def dsn(self, db: str) -> str:
        return (
            f"host={self.host} port={self.port} user={self.cluster.user} password={self.cluster.password} dbname={db}"
        )

    def url(self, db: str, driver: str = "postgresql+psycopg2") -> str:
        return f"{driver}://{self.cluster.user}:{self.cluster.password}@{self.host}:{self.port}/{db}"

    def dagster_env(self, db: str) -> dict[str, str]:
        """The variables deploy/dagster.yaml reads, pointing at database ``db`` through PgBouncer."""
        return {**self.cluster.dagster_env(db), "DAGSTER_PG_HOST": self.host, "DAGSTER_PG_PORT": str(self.port)}

    def show(self, what: str) -> list[dict[str, Any]]:
        """A SHOW command of the admin console (STATS, POOLS, CLIENTS, SERVERS...), as rows."""
        import psycopg2

        if not what.replace("_", "").isalpha():
            raise ValueError(f"not a SHOW command: {what!r}")
        conn = psycopg2.connect(self.dsn("pgbouncer"))
        conn.autocommit = True  # the console has no transactions
        try:
            with conn.cursor() as cur:
                cur.execute(f"SHOW {what}")
                names = [c.name for c in cur.description]
                return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
        finally:
            conn.close()


class PooledPostgres:
    """A throwaway cluster with a PgBouncer in front, as deploy/ runs Cloud SQL: Dagster's instance
    goes through the pooler (``dagster_env``), databases are made on the cluster (``create_database``:
    its URL is the direct one, e.g. for the warehouse)."""

    def __init__(self, cluster: PostgresCluster):
        self.cluster = cluster
        self.bouncer: PgBouncer | None = None

    def start(self) -> PooledPostgres:
        self.cluster.start()
        try:
            self.bouncer = PgBouncer(self.cluster).start()
        except BaseException:
            self.cluster.stop()
            raise
        return self

    def stop(self) -> None:
        try:
            if self.bouncer is not None:
                self.bouncer.stop()
                self.bouncer = None
        finally:
            self.cluster.stop()

    def __enter__(self) -> PooledPostgres:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def create_database(self, name: str) -> str:
        return self.cluster.create_database(name)

    def __getattr__(self, name: str) -> Any:
        # Everything else (dsn, url, host, port, user...) is the cluster's, direct: code written for a
        # PostgresCluster keeps working; only the Dagster instance's variables name the pooler.
        if name in ("cluster", "bouncer"):
            raise AttributeError(name)
        return getattr(self.cluster, name)

    def dagster_env(self, db: str) -> dict[str, str]:
        if self.bouncer is None:
            raise RuntimeError("PooledPostgres is not started")
        return self.bouncer.dagster_env(db)
