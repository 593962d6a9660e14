"""The production topology on one machine, without Docker: N workers, a real Redis, a real
MongoDB-compatible server (a local mongod, else the FerretDB build the tests use), and nginx in
front. ``make cluster`` starts it (``WORKERS=n``, ``PORT=p``), ``make cluster-stop`` stops it;
everything it runs logs into one folder (``.run/cluster/`` by default).

The end-to-end tests start the very same topology through :func:`start`. Every command it runs
is checked: a failure prints that command and its output, and stops what was already started.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field, fields
from pathlib import Path

from devstack.balancer import spawn_nginx
from devstack.database import DatabaseHost, mongo_url_of
from devstack.redis_modes import MODES, redis_topology
from devstack.servers import (
    RUN_DIR,
    free_port,
    stop_process,
    wait_for_port,
)
from devstack.workers import clean_env, settings_env, spawn_worker

ADMIN_EMAIL = "admin@cluster.local"


@dataclass
class Topology:
    run_dir: str
    port: int
    jwt_secret: str
    redis_url: str
    mongo_url: str
    mongo_db: str
    worker_ports: list[int]
    pids: dict[str, int] = field(default_factory=dict)
    mongo_debug_port: int | None = None
    postgres_dir: str | None = None
    # The servers' data folders (under the system's temporary folder), removed by stop().
    workdirs: list[str] = field(default_factory=list)
    admin_token: str = ""
    redis_mode: str = "standalone"
    # The processes, when this Python process started them (not saved).
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def worker_env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        return clean_env(
            **settings_env(
                redis_url=self.redis_url,
                mongo_url=self.mongo_url,
                mongo_db=self.mongo_db,
                jwt_secret=self.jwt_secret,
            ),
            **(extra or {}),
        )

    def save(self) -> None:
        path = Path(self.run_dir) / "state.json"
        state = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "processes"}
        path.write_text(json.dumps(state, indent=2))
        path.chmod(0o600)


class CommandFailed(RuntimeError):
    """A command of the topology failed; the message holds the command and its output."""


def _checked(argv: list[str], env: dict[str, str] | None = None, timeout: float = 60) -> str:
    try:
        done = subprocess.run(
            argv, env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise CommandFailed(f"cluster: {' '.join(argv)} timed out after {timeout} s") from exc
    if done.returncode != 0:
        raise CommandFailed(
            f"cluster: {' '.join(argv)} exited {done.returncode}\n{done.stdout}{done.stderr}"
        )
    return done.stdout


def _wait_for(port: int, what: str, log: Path, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            wait_for_port(port, timeout_s=0.5)
            return
        except RuntimeError:
            continue
    tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
    raise CommandFailed(f"cluster: {what} is not listening on {port}\n{tail}")


def _wait_ready(port: int, what: str, log: Path) -> None:
    """Until the worker's /readyz answers 200: Redis and the database answer and its pub/sub
    listener hears its own probe. `make cluster` returns a topology that serves."""
    deadline = time.monotonic() + 60
    answer = ""
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as resp:
                if resp.status == 200:
                    return
        except urllib.error.HTTPError as exc:
            answer = exc.read().decode(errors="replace")
        except OSError as exc:
            answer = str(exc)
        time.sleep(0.1)
    tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
    raise CommandFailed(f"cluster: {what} is not ready on {port}: {answer}\n{tail}")


def start(
    run_dir: Path,
    workers: int = 3,
    port: int = 3000,
    worker_settings: dict[str, str] | None = None,
    redis_mode: str = "standalone",
) -> Topology:
    """Start the topology; when a step fails, everything started so far is stopped first."""
    run_dir.mkdir(parents=True, exist_ok=True)
    if shutil.which("nginx") is None and not Path("/usr/sbin/nginx").exists():
        raise SystemExit("cluster: nginx is not installed (apt-get install nginx)")
    database = DatabaseHost(run_dir / "postgres")
    topology = Topology(
        run_dir=str(run_dir),
        port=port,
        jwt_secret=secrets.token_urlsafe(48),
        redis_url="",
        mongo_url="",
        mongo_db="presence",
        worker_ports=[free_port() for _ in range(workers)],
        redis_mode=redis_mode,
    )
    try:
        _start_all(topology, database, worker_settings or {})
    except BaseException:
        stop(run_dir, topology)
        raise
    return topology


def _start_all(topology: Topology, database: DatabaseHost, worker_settings: dict[str, str]) -> None:
    run_dir = Path(topology.run_dir)
    # The state file is written as soon as each process runs, so a stop after any failure
    # (or a `make cluster-stop` after a crash of this script) finds every pid.
    database.start()
    if database.postgres is not None:
        topology.postgres_dir = str(database.postgres.folder)
        topology.pids.update(database.pids)
        assert database.postgres.process is not None
        topology.processes["postgres"] = database.postgres.process
        topology.save()
    redis = redis_topology(topology.redis_mode)
    named = {f"redis-{index}": server for index, server in enumerate(redis.servers)}
    for name, server in named.items():
        server.detach = True
        server.log_path = run_dir / f"{name}.log"
        topology.workdirs.append(str(server.workdir))
    # Started the way its mode needs (replicas after masters, the cluster created), then every
    # process recorded.
    try:
        redis.start()
    finally:
        for name, server in named.items():
            if server.process is not None:
                topology.pids[name] = server.process.pid
                topology.processes[name] = server.process
        topology.save()
    mongo = database.mongo_server(detach=True)
    mongo.log_path = run_dir / mongo.log_path.name
    topology.workdirs.append(str(mongo.workdir))
    mongo.start()
    assert mongo.process is not None
    topology.pids["mongo"] = mongo.process.pid
    topology.processes["mongo"] = mongo.process
    topology.save()
    topology.redis_url = redis.url
    topology.mongo_url = mongo_url_of(mongo)
    topology.mongo_debug_port = mongo.extra_ports.get("debug")
    topology.save()
    for index, worker_port in enumerate(topology.worker_ports):
        name = f"worker-{index}"
        process = spawn_worker(
            name,
            topology.worker_env(worker_settings),
            run_dir / f"{name}.log",
            port=worker_port,
            detach=True,  # outlives `make cluster`; stopped by `make cluster-stop`
        )
        topology.pids[name] = process.pid
        topology.processes[name] = process
        topology.save()
    for index, worker_port in enumerate(topology.worker_ports):
        name = f"worker-{index}"
        _wait_for(worker_port, name, run_dir / f"{name}.log", topology.processes[name])
        _wait_ready(worker_port, name, run_dir / f"{name}.log")
    try:
        nginx_process = spawn_nginx(run_dir, topology.port, topology.worker_ports, detach=True)
    except RuntimeError as exc:
        raise CommandFailed(f"cluster: {exc}") from exc
    topology.pids["nginx"] = nginx_process.pid
    topology.processes["nginx"] = nginx_process
    topology.save()
    topology.admin_token = _admin_token(topology)
    topology.save()


def admin_create_args(password: str) -> list[str]:
    """``presence`` arguments creating the admin. "--password=…" in one argument: a random
    password may start with "-", which argparse would take for an option (one start in 64
    failed so)."""
    return ["user", "create", "--email", ADMIN_EMAIL, f"--password={password}",
            "--username", "admin", "--admin"]  # fmt: skip


def _admin_token(topology: Topology) -> str:
    env = topology.worker_env()
    cli = [sys.executable, "-m", "presence"]
    create = [*cli, *admin_create_args(secrets.token_urlsafe(12))]
    try:
        _checked(create, env)
    except CommandFailed as exc:
        # After a restart over the same database the admin exists: only the token is new.
        if "already registered" not in str(exc):
            raise
    return _checked([*cli, "token", "--email", ADMIN_EMAIL], env).strip()


def _gone(pid: int) -> bool:
    try:
        reaped, _ = os.waitpid(pid, os.WNOHANG)  # our own child: reap it
        return reaped == pid
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


# Load balancer first, then workers (graceful), then the stores; PostgreSQL stops on SIGINT
# (its fast shutdown) once FerretDB is gone.
_STOP_SIGNAL = {"postgres": signal.SIGINT}


def _stop_one(name: str, pid: int, process: subprocess.Popen[bytes] | None) -> None:
    sig = _STOP_SIGNAL.get(name, signal.SIGTERM)
    if process is not None:
        stop_process(process, sig, timeout_s=15)
        return
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 15
    while not _gone(pid):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            break
        time.sleep(0.05)


def stop(run_dir: Path, topology: Topology | None = None) -> None:
    state = run_dir / "state.json"
    if topology is not None:
        pids = dict(topology.pids)
        folders = [topology.postgres_dir, *topology.workdirs]
    elif state.exists():
        saved = json.loads(state.read_text())
        pids = saved["pids"]
        folders = [saved.get("postgres_dir"), *saved.get("workdirs", [])]
    else:
        print(f"cluster: nothing running in {run_dir}")
        return
    processes = topology.processes if topology is not None else {}
    workers = sorted(k for k in pids if k.startswith("worker"))
    redis = sorted(k for k in pids if k.startswith("redis"))
    for name in ["nginx", *workers, *redis, "mongo", "postgres"]:
        if name in pids:
            _stop_one(name, pids[name], processes.get(name))
    for folder in folders:
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
    state.unlink(missing_ok=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("command", choices=["start", "stop"])
    parser.add_argument("--workers", type=int, default=int(os.environ.get("WORKERS", "3")))
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "3000")))
    parser.add_argument("--run-dir", type=Path, default=RUN_DIR / "cluster")
    parser.add_argument(
        "--redis",
        choices=MODES,
        default=os.environ.get("REDIS") or "standalone",
        help="the Redis topology: one server, Sentinel (master, replica, three sentinels) or"
        " Cluster (three masters, three replicas)",
    )
    args = parser.parse_args()
    # Absolute: the servers it starts (PostgreSQL's socket among them) run in other folders.
    args.run_dir = args.run_dir.resolve()
    if args.command == "stop":
        stop(args.run_dir)
        return 0
    if (args.run_dir / "state.json").exists():
        stop(args.run_dir)
    try:
        topology = start(args.run_dir, args.workers, args.port, redis_mode=args.redis)
    except CommandFailed as exc:
        print(exc, file=sys.stderr)
        return 1
    print(
        "\n".join(
            [
                f"presence cluster: {args.workers} workers behind nginx on {topology.url}",
                f"  Redis    {topology.redis_url} ({topology.redis_mode})",
                f"  MongoDB  {topology.mongo_url} (database {topology.mongo_db})",
                f"  logs     {args.run_dir}/",
                f"  admin    {ADMIN_EMAIL}",
                f"  token    {topology.admin_token}",
                f"  try      curl -H 'Authorization: Bearer {topology.admin_token}' "
                f"{topology.url}/maintenance/stats",
                "  stop     make cluster-stop",
            ]
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
