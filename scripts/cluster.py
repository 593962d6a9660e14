"""The production topology on one machine, without Docker: N workers, a real Redis, a real
MongoDB-compatible server (a local mongod, else the FerretDB build the tests use), and nginx in
front. ``make cluster`` starts it (``WORKERS=n``, ``PORT=p``), ``make cluster-stop`` stops it;
everything it runs logs into one folder (``.run/cluster/`` by default).

The end-to-end tests start the very same topology through :func:`start`.
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
from dataclasses import dataclass, field, fields
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.servers import (  # noqa: E402 - needs the repository on sys.path
    free_port,
    mongo_server,
    mongo_url_of,
    redis_server,
    redis_url_of,
    wait_for_port,
)

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
    admin_token: str = ""
    # The processes, when this Python process started them (not saved).
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def worker_env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PRESENCE_")}
        env.update(
            PRESENCE_REDIS_URL=self.redis_url,
            PRESENCE_MONGO_URL=self.mongo_url,
            PRESENCE_MONGO_DB=self.mongo_db,
            PRESENCE_JWT_SECRET=self.jwt_secret,
            PRESENCE_HOST="127.0.0.1",
        )
        env.update(extra or {})
        return env

    def save(self) -> None:
        path = Path(self.run_dir) / "state.json"
        state = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "processes"}
        path.write_text(json.dumps(state, indent=2))
        path.chmod(0o600)


def _spawn(
    argv: list[str], log: Path, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            start_new_session=True,  # outlives `make cluster`; stopped by `make cluster-stop`
        )


def nginx_config(run_dir: Path, port: int, worker_ports: list[int]) -> str:
    template = (ROOT / "deploy" / "nginx.conf.template").read_text()
    servers = "\n".join(
        f"        server 127.0.0.1:{p} max_fails=3 fail_timeout=5s;" for p in worker_ports
    )
    return (
        template.replace("{{run_dir}}", str(run_dir))
        .replace("{{listen}}", f"127.0.0.1:{port}")
        .replace("{{servers}}", servers)
    )


def start(
    run_dir: Path, workers: int = 3, port: int = 3000, worker_settings: dict[str, str] | None = None
) -> Topology:
    run_dir.mkdir(parents=True, exist_ok=True)
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(nginx).exists():
        raise SystemExit("cluster: nginx is not installed (apt-get install nginx)")
    redis = redis_server()
    mongo = mongo_server()
    for server in (redis, mongo):
        server.log_path = run_dir / server.log_path.name
        server.process = _spawn(server.argv, server.log_path, cwd=server.workdir)
        wait_for_port(server.port)
    topology = Topology(
        run_dir=str(run_dir),
        port=port,
        jwt_secret=secrets.token_urlsafe(48),
        redis_url=redis_url_of(redis),
        mongo_url=mongo_url_of(mongo),
        mongo_db="presence",
        worker_ports=[free_port() for _ in range(workers)],
        mongo_debug_port=mongo.extra_ports.get("debug"),
    )
    assert redis.process is not None
    assert mongo.process is not None
    topology.pids["redis"] = redis.process.pid
    topology.pids["mongo"] = mongo.process.pid
    topology.processes.update(redis=redis.process, mongo=mongo.process)
    topology.save()
    for index, worker_port in enumerate(topology.worker_ports):
        env = topology.worker_env({"PRESENCE_PORT": str(worker_port), **(worker_settings or {})})
        name = f"worker-{index}"
        process = _spawn(
            [sys.executable, "-m", "presence", "serve", "--worker-id", name],
            run_dir / f"{name}.log",
            env,
        )
        topology.pids[name] = process.pid
        topology.processes[name] = process
    for worker_port in topology.worker_ports:
        wait_for_port(worker_port)
    conf = run_dir / "nginx.conf"
    conf.write_text(nginx_config(run_dir, port, topology.worker_ports))
    subprocess.run(
        [nginx, "-t", "-c", str(conf), "-p", str(run_dir)], check=True, capture_output=True
    )
    nginx_process = _spawn(
        [nginx, "-c", str(conf), "-p", str(run_dir), "-g", "daemon off;"],
        run_dir / "nginx.log",
    )
    topology.pids["nginx"] = nginx_process.pid
    topology.processes["nginx"] = nginx_process
    wait_for_port(port)
    topology.admin_token = _admin_token(topology)
    topology.save()
    return topology


def _admin_token(topology: Topology) -> str:
    env = topology.worker_env()
    cli = [sys.executable, "-m", "presence"]
    password = secrets.token_urlsafe(12)
    subprocess.run(
        [
            *cli,
            "user",
            "create",
            "--email",
            ADMIN_EMAIL,
            "--password",
            password,
            "--username",
            "admin",
            "--admin",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )  # already there after a restart: then only the token is new
    token = subprocess.run(
        [*cli, "token", "--email", ADMIN_EMAIL],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return token.stdout.strip()


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


def stop(run_dir: Path, topology: Topology | None = None) -> None:
    state = run_dir / "state.json"
    if not state.exists():
        print(f"cluster: nothing running in {run_dir}")
        return
    pids: dict[str, int] = json.loads(state.read_text())["pids"]
    processes = topology.processes if topology is not None else {}
    # Load balancer first, then workers (graceful: SIGTERM), then the stores.
    order = ["nginx", *sorted(k for k in pids if k.startswith("worker")), "redis", "mongo"]
    for name in order:
        pid = pids.get(name)
        if pid is None:
            continue
        if name in processes:
            process = processes[name]
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            continue
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
        deadline = time.monotonic() + 15
        while not _gone(pid):
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                break
            time.sleep(0.05)
    state.unlink()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("command", choices=["start", "stop"])
    parser.add_argument("--workers", type=int, default=int(os.environ.get("WORKERS", "3")))
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "3000")))
    parser.add_argument("--run-dir", type=Path, default=ROOT / ".run" / "cluster")
    args = parser.parse_args()
    if args.command == "stop":
        stop(args.run_dir)
        return 0
    if (args.run_dir / "state.json").exists():
        stop(args.run_dir)
    topology = start(args.run_dir, args.workers, args.port)
    print(
        "\n".join(
            [
                f"presence cluster: {args.workers} workers behind nginx on {topology.url}",
                f"  Redis    {topology.redis_url}",
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
