"""The web console in headless Chromium against ``make cluster``'s topology (3 workers, Redis,
the MongoDB-compatible server, nginx): two users of one conversation, a guest through a share
link, an admin. Screenshots are kept in ``.run/console/``."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator

import pytest

from devstack.servers import ROOT, free_port
from scripts.cluster import Topology, start, stop
from tests.support.processes import http

GRACE_S = 1.0
IDLE_AWAY_S = 4.0
SCREENSHOTS = ROOT / ".run" / "console"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Topology]:
    run_dir = tmp_path_factory.mktemp("cluster")
    topology = start(
        run_dir,
        workers=3,
        port=free_port(),
        worker_settings={
            "PRESENCE_OFFLINE_GRACE_S": str(GRACE_S),
            "PRESENCE_IDLE_AWAY_S": str(IDLE_AWAY_S),
        },
    )
    yield topology
    stop(run_dir, topology)


def account(base: str, name: str) -> dict[str, str]:
    password = "password-1"
    status, body = http(
        "POST",
        base + "/api/auth/register",
        {"username": name, "email": f"{name}@example.test", "password": password},
    )
    assert status == 201, body
    return {"id": body["user"]["id"], "email": f"{name}@example.test", "password": password,
            "token": body["token"]}  # fmt: skip


def test_console_shows_presence_live_in_a_real_browser(cluster: Topology) -> None:
    bundle = ROOT / "presence" / "console" / "static" / "console.js"
    assert bundle.exists(), "the console is not built: make console"
    status, page = http("GET", cluster.url + "/")
    # Without its script the page still loads and says how to build it.
    assert status == 200 and "presence console" in str(page) and "make console" in str(page)
    a, b = account(cluster.url, "ada"), account(cluster.url, "bob")
    status, admin = http(
        "GET",
        cluster.url + "/api/users/me",
        None,
        {"Authorization": f"Bearer {cluster.admin_token}"},
    )
    assert status == 200, admin
    status, body = http(
        "POST",
        cluster.url + "/api/conversations",
        {"title": "Launch plan", "memberIds": [a["id"], admin["data"]["id"]]},
        {"Authorization": f"Bearer {b['token']}"},
    )
    assert status == 201, body
    # A large conversation (600 members, above the fan-out limit of 500) from the platform's
    # directory, with a service token made as an operator makes one.
    token = subprocess.run(
        [sys.executable, "-m", "presence", "service-token", "create", "--name", "console",
         "--scopes", "directory:write"],
        env=cluster.worker_env(), capture_output=True, text=True, timeout=60, check=True,
    ).stdout.strip()  # fmt: skip
    everyone = [a["id"], b["id"], *(f"crowd-{i}" for i in range(598))]
    status, body = http(
        "PUT",
        cluster.url + "/api/service/conversations/everyone",
        {"title": "Everyone", "memberIds": everyone},
        {"Authorization": f"Bearer {token}"},
    )
    assert status == 200 and body["data"]["added"] == 600, body
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    setup = {
        "base": cluster.url,
        "a": a,
        "b": b,
        "adminToken": cluster.admin_token,
        "screenshots": str(SCREENSHOTS),
        "graceMs": int(GRACE_S * 1000),
        "idleMs": int(IDLE_AWAY_S * 1000),
    }
    node = shutil.which("node")
    assert node is not None, "Node.js 20 is needed for the browser test"
    run = subprocess.run(
        [node, "console.mjs", json.dumps(setup)],
        cwd=ROOT / "tests" / "js",
        capture_output=True,
        text=True,
        timeout=120,
    )
    steps = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    assert run.returncode == 0, (steps, run.stderr[-2000:])
    print("console steps:", json.dumps(steps))
    names = [s["step"] for s in steps]
    assert names == [
        "B sees A offline",
        "B sees A online",
        "B sees the large conversation's count",
        "B sees A away (idle)",
        "B sees A back",
        "B sees A dnd",
        "B sees the guest online",
        "B sees A offline after A's page closed",
        "A shows last seen",
        "admin sees the cluster",
        "done",
    ], steps
    by_name = {s["step"]: s for s in steps}
    # Offline within the grace period after the last page closed (plus delivery).
    assert (
        by_name["B sees A offline after A's page closed"]["offlineAfterMs"] < GRACE_S * 1000 + 4000
    )
    assert by_name["admin sees the cluster"]["workers"] == 3
    # The admin's live feed heard A online, A dnd, the guest, A offline (and bob).
    assert by_name["admin sees the cluster"]["feed"] >= 4
    for kind in ("user", "live", "guest", "offline", "admin"):
        assert (SCREENSHOTS / f"console-{kind}.png").stat().st_size > 10_000
