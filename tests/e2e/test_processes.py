"""Real ``presence`` processes: embedded mode on a machine with no services, several workers on
real Redis and the real MongoDB-compatible server, and the operator commands."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

from devstack.servers import ROOT
from tests.conftest import EVERY_REDIS_MODE, JWT_SECRET, service_env
from tests.support.processes import (
    clean_env,
    http,
    register_over_http,
    start_ready_workers,
    start_worker,
    wait_healthy,
)


def test_embedded_mode_serves_within_seconds_without_services(tmp_path: Path) -> None:
    # An empty PATH: whatever this machine has installed, embedded mode cannot reach it.
    worker = start_worker(clean_env(PATH="", PRESENCE_LOG_FORMAT="text"), tmp_path, "embedded")
    try:
        assert wait_healthy(worker) < 10
        deadline = time.monotonic() + 5
        while "admin token" not in worker.output() and time.monotonic() < deadline:
            time.sleep(0.05)
        out = worker.output()
        assert "NOTHING IS PERSISTED" in out
        token = re.search(r"admin token\s+(\S+)", out)
        assert token is not None, out
        status, body = http(
            "GET",
            worker.url + "/maintenance/stats",
            headers={"Authorization": f"Bearer {token.group(1)}"},
        )
        assert status == 200
        assert body["data"]["totalUsers"] == 2
        # The console and the demo conversation its printed logins share.
        assert f"console       http://localhost:{worker.port}/" in out
        status, body = http(
            "GET",
            worker.url + "/api/conversations",
            headers={"Authorization": f"Bearer {token.group(1)}"},
        )
        assert status == 200 and [c["title"] for c in body["data"]] == ["Welcome"]
        status, page = http("GET", worker.url + "/")
        assert status == 200 and "presence console" in str(page)
        status, body = http("GET", worker.url + "/readyz")
        assert status == 200
    finally:
        worker.stop()
    assert worker.process.returncode == 0


@EVERY_REDIS_MODE
def test_three_worker_processes_share_throttle_and_counters(
    tmp_path: Path, mode_url: str, mongo_url: str
) -> None:
    """The seed's throttle figures over three worker processes started with the Redis URL of
    each mode, exactly as an operator writes it; every worker ready (its pub/sub listener
    hears its own probe) first."""
    env = clean_env(**service_env(mode_url, mongo_url))
    workers = start_ready_workers(env, tmp_path, 3)
    try:
        auth = register_over_http(workers[0].url, "ann")
        cli = subprocess.run(
            [
                sys.executable,
                "-m",
                "presence",
                "user",
                "create",
                "--email",
                "ops@example.test",
                "--password",
                "password-1",
                "--username",
                "ops",
                "--admin",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert cli.returncode == 0, cli.stderr
        token = subprocess.run(
            [sys.executable, "-m", "presence", "token", "--email", "ops@example.test"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout.strip()
        admin = {"Authorization": f"Bearer {token}"}

        for i in range(10):
            status, _ = http("GET", workers[i % 3].url + "/api/users/me", headers=auth)
            assert status == 200
        time.sleep(1.0)
        for w in workers:
            status, body = http("GET", w.url + "/maintenance/status-metrics", headers=admin)
            assert status == 200
            assert body["data"] == {
                "totalRequests": 10,
                "throttledRequests": 9,
                "successfulUpdates": 1,
                "failedUpdates": 0,
                "cacheSize": 1,
                "throttleRate": 90.0,
            }
        status, body = http("GET", workers[2].url + "/maintenance/stats", headers=admin)
        assert body["data"]["workers"] == 3
        assert body["data"]["onlineUsers"] == 1
    finally:
        for w in workers:
            w.stop()
    assert [w.process.returncode for w in workers] == [0, 0, 0]


def _presence(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "presence", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_service_token_commands_as_an_operator_uses_them(
    tmp_path: Path, redis_url: str, mongo_url: str
) -> None:
    """``presence service-token create/list/revoke`` against the real database, the token used
    on a real worker: printed once, listed without it, refused once revoked."""
    env = clean_env(**service_env(redis_url, mongo_url))
    [worker] = start_ready_workers(env, tmp_path, 1)
    try:
        user = register_over_http(worker.url, "ann")
        _, me = http("GET", worker.url + "/api/users/me", headers=user)
        made = _presence(env, "service-token", "create", "--name", "push", "--scopes",
                         "presence:read")  # fmt: skip
        assert made.returncode == 0, made.stderr
        token = made.stdout.strip()
        assert token.startswith("psv_") and "shown once" in made.stderr
        service = {"Authorization": f"Bearer {token}"}
        status, body = http("POST", worker.url + "/api/service/presence",
                            {"ids": [me["data"]["id"]]}, headers=service)  # fmt: skip
        assert status == 200 and body["data"]["users"][0]["status"] == "online", body
        listed = _presence(env, "service-token", "list")
        assert listed.returncode == 0
        assert listed.stdout.splitlines()[0].split("\t")[:2] == ["push", "presence:read"]
        assert token not in listed.stdout
        again = _presence(env, "service-token", "create", "--name", "push", "--scopes",
                          "events:read")  # fmt: skip
        assert (again.returncode, again.stderr.strip()) == (1, "presence: that name is taken")
        bad = _presence(env, "service-token", "create", "--name", "x", "--scopes", "root")
        assert bad.returncode == 1 and "scopes must be some of" in bad.stderr
        revoked = _presence(env, "service-token", "revoke", "--name", "push")
        assert revoked.returncode == 0, revoked.stderr
        gone = _presence(env, "service-token", "revoke", "--name", "push")
        assert gone.returncode == 1 and "no service token is named" in gone.stderr
        assert _presence(env, "service-token", "list").stdout == ""
        deadline = time.monotonic() + 10  # RECHECK_S on the worker that verified it
        while time.monotonic() < deadline:
            status, body = http("POST", worker.url + "/api/service/presence",
                                {"ids": [me["data"]["id"]]}, headers=service)  # fmt: skip
            if status == 401:
                break
            time.sleep(0.25)
        assert (status, body["error"]["code"]) == (401, "invalid_service_token")
    finally:
        worker.stop()


def test_operator_commands_explain_what_they_need(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "presence", "token", "--email", "x@example.test"],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "PRESENCE_MONGO_URL" in result.stderr
    bad = subprocess.run(
        [sys.executable, "-m", "presence", "serve"],
        env=clean_env(PRESENCE_PORT="http", PRESENCE_JWT_SECRET=JWT_SECRET),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [
        "presence: configuration error: PRESENCE_PORT: expected an integer, got 'http'"
    ]


def test_the_test_database_probe_measures_what_the_readme_quotes() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "devstack.probe"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("test database: ")
    measured = [line for line in lines if "/s, p50 " in line]
    assert len(measured) == 6, done.stdout
