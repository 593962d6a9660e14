"""The test database: a ``mongod`` from PATH when there is one, else FerretDB 1.24 on a private
PostgreSQL cluster.

FerretDB's SQLite backend is not used: it scans the whole collection on every update (about 20
writes/s at 5 000 documents) and fails with ``database is locked`` under concurrency. On
PostgreSQL the same operations run 15-30x faster without lock errors.

Two limits of FerretDB hold on any backend, and the settings here are sized for them:

- an update holds one pooled PostgreSQL connection for its cursor while it takes a second one
  to write, so a bulk with more operations than the pool, or more concurrent updates than half
  of it, waits forever. FerretDB's pool gets :data:`FERRETDB_POOL` connections, each client's
  PyMongo pool is capped at :data:`CLIENT_POOL` through the URL, and the product never sends a
  bulk larger than ``PRESENCE_MONGO_MAX_BATCH`` (100): (100 + 2 x 32 x 6 workers) < 500;
- concurrent updates of one document are not atomic (read, modify, write back).

The PostgreSQL cluster is created with ``initdb`` and runs ``postgres`` as a child process (as
the ``postgres`` user when this process is root: PostgreSQL refuses to run as root), listening
on a Unix socket inside its own folder only, trust authentication. Durability is off (``fsync``,
``synchronous_commit``, ``full_page_writes``): it holds test data, and no test crashes
PostgreSQL itself — the fault suite kills FerretDB, the MongoDB-compatible server.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devstack.servers import CACHE_DIR, RUN_DIR, Server, free_port, stop_process

FERRETDB = CACHE_DIR / "bin" / "ferretdb"
# FerretDB's PostgreSQL pool and each client's PyMongo pool (see the module docstring).
FERRETDB_POOL = 500
CLIENT_POOL = 32
# Several FerretDB servers may share one cluster (the session's and a fault scenario's), and
# pgx closes idle connections only after a minute.
MAX_CONNECTIONS = 1200
# FerretDB filters a field as `_jsonb -> 'field' @> value` (containment, so that an array
# field matches its elements, as in MongoDB), but indexes it with a btree, which `@>` cannot
# use: every lookup by _id, email or member scanned the whole table (9 ms at 20 000 users,
# growing with the collection). Beside every single-field index FerretDB creates (the _id
# index and each one the product asks for), this trigger adds a GIN index on the same
# expression that `@>` can use. Installed in template1, so every database inherits it.
PUSHDOWN_INDEXES = """
CREATE FUNCTION pushdown_index() RETURNS event_trigger LANGUAGE plpgsql AS $$
DECLARE
  command record;
  found record;
BEGIN
  FOR command IN SELECT objid FROM pg_event_trigger_ddl_commands()
                 WHERE command_tag = 'CREATE INDEX' LOOP
    SELECT i.indrelid::regclass AS tbl, i.indnatts AS columns, am.amname AS method,
           pg_get_indexdef(i.indexrelid, 1, true) AS expr, c.relname AS name
      INTO found
      FROM pg_index i
      JOIN pg_class c ON c.oid = i.indexrelid
      JOIN pg_am am ON am.oid = c.relam
     WHERE i.indexrelid = command.objid;
    IF found.method = 'btree' AND found.columns = 1 AND found.expr LIKE '(_jsonb -> %' THEN
      EXECUTE format('CREATE INDEX %I ON %s USING gin ((%s) jsonb_path_ops)',
                     left(found.name, 58) || '_gin', found.tbl, found.expr);
    END IF;
  END LOOP;
END $$;
CREATE EVENT TRIGGER pushdown_index ON ddl_command_end WHEN TAG IN ('CREATE INDEX')
  EXECUTE FUNCTION pushdown_index();
"""
# AF_UNIX paths are limited to 107 bytes; the socket is ".s.PGSQL.<port>" in this folder.
_MAX_SOCKET_DIR = 90


class DatabaseError(RuntimeError):
    """The test database could not be set up; the message says what to install or run."""


def _postgres_bindir() -> Path:
    # Debian keeps the server binaries off PATH, one folder per major version.
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=_version_key)
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("postgres")
    if on_path is not None and shutil.which("initdb") is not None:
        return Path(on_path).resolve().parent
    raise DatabaseError("PostgreSQL is not installed: run scripts/test-services.sh")


def _version_key(path: str) -> int:
    part = Path(path).parts[-3]
    return int(part) if part.isdigit() else 0


def _traversable_by_others(path: Path) -> bool:
    """Whether a user other than the owner can reach ``path`` (every ancestor has o+x)."""
    for folder in [path, *path.parents]:
        if not folder.exists():
            continue
        if not folder.stat().st_mode & stat.S_IXOTH:
            return False
    return True


@dataclass
class Postgres:
    """A private PostgreSQL cluster in ``folder`` (data and socket inside it)."""

    folder: Path
    bindir: Path = field(default_factory=_postgres_bindir)
    # A command the server runs under (the benchmarks pin it to a core with taskset).
    prefix: list[str] = field(default_factory=list)
    process: subprocess.Popen[bytes] | None = None

    @property
    def data_dir(self) -> Path:
        return self.folder / "data"

    @property
    def socket_dir(self) -> Path:
        return self.folder / "socket"

    def _run_as(self) -> dict[str, Any]:
        # PostgreSQL refuses to run as root; as anyone else it runs as that user.
        if os.geteuid() != 0:
            return {}
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            raise DatabaseError(
                "running as root needs the postgres user: run scripts/test-services.sh"
            ) from None
        return {"user": "postgres", "group": "postgres"}

    def start(self) -> None:
        as_user = self._run_as()
        self.folder.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(exist_ok=True)
        if as_user:
            for path in (self.folder, self.socket_dir):
                shutil.chown(path, "postgres", "postgres")
        self._initdb(as_user)
        log_path = self.folder / "postgres.log"
        settings = {
            "listen_addresses": "",  # the Unix socket only
            "unix_socket_directories": str(self.socket_dir),
            "max_connections": str(MAX_CONNECTIONS),
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            # FerretDB passes the field name as a parameter: a plan made for the actual
            # values is what lets PostgreSQL match it to the indexes above.
            "plan_cache_mode": "force_custom_plan",
        }
        argv = [*self.prefix, str(self.bindir / "postgres"), "-D", str(self.data_dir)]
        for name, value in settings.items():
            argv += ["-c", f"{name}={value}"]
        with log_path.open("ab") as log:
            self.process = subprocess.Popen(
                argv,
                cwd=self.folder,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                **as_user,
            )
        deadline = time.monotonic() + 30
        while not self._ready():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise DatabaseError(f"PostgreSQL did not start:\n{log_path.read_text()[-2000:]}")
            time.sleep(0.05)
        self.sql(PUSHDOWN_INDEXES, database="template1")

    def _initdb(self, as_user: dict[str, Any]) -> None:
        # Always a new cluster: test data never outlives its run, and a folder left by a
        # killed run (its postmaster.pid, its databases) cannot get in the way.
        shutil.rmtree(self.data_dir, ignore_errors=True)
        initdb = subprocess.run(
            [
                str(self.bindir / "initdb"),
                "--pgdata",
                str(self.data_dir),
                "--username=postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--no-sync",
            ],
            capture_output=True,
            text=True,
            cwd=self.folder,
            check=False,
            **as_user,
        )
        if initdb.returncode != 0:
            raise DatabaseError(f"initdb failed:\n{initdb.stdout}\n{initdb.stderr}")

    def _ready(self) -> bool:
        probe = subprocess.run(
            [str(self.bindir / "pg_isready"), "-q", "-h", str(self.socket_dir)],
            capture_output=True,
            check=False,
        )
        return probe.returncode == 0

    def sql(self, statement: str, database: str = "postgres") -> str:
        done = subprocess.run(
            [
                str(self.bindir / "psql"),
                "-h",
                str(self.socket_dir),
                "-U",
                "postgres",
                "-d",
                database,
                "-v",
                "ON_ERROR_STOP=1",
                "-qAt",
                "-c",
                statement,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise DatabaseError(f"psql {statement!r} failed: {done.stderr.strip()}")
        return done.stdout

    def create_database(self, name: str) -> str:
        """A new empty database; its libpq URL (Unix socket)."""
        self.sql(f'CREATE DATABASE "{name}"')
        return f"postgres://postgres@/{name}?host={self.socket_dir}"

    def stop(self) -> None:
        if self.process is not None:
            # SIGINT is PostgreSQL's fast shutdown: sessions are ended, not waited for.
            stop_process(self.process, signal.SIGINT, timeout_s=20)
        self.process = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


def postgres_folder(preferred: Path) -> Path:
    """``preferred`` (under the git-ignored ``.run/``) when the postgres user can reach it and
    the socket path fits, else a new folder under the system's temporary folder."""
    fits = len(str(preferred / "socket")) <= _MAX_SOCKET_DIR
    if fits and (os.geteuid() != 0 or _traversable_by_others(preferred)):
        return preferred
    return Path(tempfile.mkdtemp(prefix="presence-postgres-"))


@dataclass
class DatabaseHost:
    """Where the MongoDB-compatible servers come from.

    With ``mongod`` on PATH each server is a ``mongod``; otherwise each is a FerretDB process
    over its own database of one PostgreSQL cluster that this host starts and stops.
    """

    folder: Path | None = None
    prefix: list[str] = field(default_factory=list)
    postgres: Postgres | None = None
    _databases: int = 0

    @property
    def mongod(self) -> str | None:
        return shutil.which("mongod")

    @property
    def pids(self) -> dict[str, int]:
        if self.postgres is None or self.postgres.process is None:
            return {}
        return {"postgres": self.postgres.process.pid}

    def start(self) -> None:
        if self.mongod is not None:
            return
        if not FERRETDB.exists():
            raise DatabaseError(
                "no mongod on PATH and no FerretDB build: run scripts/test-services.sh"
            )
        preferred = self.folder or RUN_DIR / f"postgres-{os.getpid()}-{time.time_ns() % 10**9}"
        self.postgres = Postgres(postgres_folder(preferred), prefix=self.prefix)
        self.postgres.start()

    def mongo_server(self, *, detach: bool = False) -> Server:
        """A new server on a free port, not started yet; ``start()`` it."""
        port = free_port()
        workdir = Path(tempfile.mkdtemp(prefix="presence-mongo-"))
        mongod = self.mongod
        if mongod is not None:
            argv = [mongod, "--port", str(port), "--bind_ip", "127.0.0.1", "--dbpath",
                    str(workdir), "--quiet"]  # fmt: skip
            return Server(argv, port, workdir, workdir / "mongod.log", "mongod", detach=detach)
        if self.postgres is None:
            raise DatabaseError("DatabaseHost.start() was not called")
        self._databases += 1
        url = self.postgres.create_database(f"ferretdb_{self._databases}")
        debug_port = free_port()
        argv = [
            str(FERRETDB),
            "--handler=postgresql",
            f"--postgresql-url={url}&pool_max_conns={FERRETDB_POOL}",
            f"--listen-addr=127.0.0.1:{port}",
            "--telemetry=disable",
            f"--debug-addr=127.0.0.1:{debug_port}",
            f"--state-dir={workdir}",
            "--log-level=warn",
        ]
        return Server(
            argv,
            port,
            workdir,
            workdir / "ferretdb.log",
            "ferretdb",
            {"debug": debug_port},
            detach=detach,
        )

    def stop(self) -> None:
        if self.postgres is not None:
            self.postgres.cleanup()
            self.postgres = None


def mongo_url_of(server: Server) -> str:
    pool = f"&maxPoolSize={CLIENT_POOL}" if server.kind == "ferretdb" else ""
    return f"mongodb://127.0.0.1:{server.port}/?serverSelectionTimeoutMS=3000{pool}"
