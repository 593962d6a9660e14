"""The JavaScript client (``clients/js``) under Node's test runner: its store's rules, then the
client against two real worker processes on real Redis and the real MongoDB-compatible server
(two users who share a conversation, on different workers, one connection dropped), and its
TypeScript types compiled against a typical use."""

from __future__ import annotations

import shutil
import subprocess
import threading
from pathlib import Path

import redis

from devstack.servers import ROOT
from tests.conftest import service_env
from tests.support.processes import clean_env, http, start_ready_workers

CLIENT = ROOT / "clients" / "js"


def account(url: str, name: str) -> dict[str, str]:
    body = {"username": name, "email": f"{name}@example.test", "password": "password-1"}
    status, answer = http("POST", url + "/api/auth/register", body)
    assert status == 201, answer
    return {"id": answer["user"]["id"], "token": answer["token"]}


class PubsubKiller(threading.Thread):
    """Kills the workers' pub/sub connections (``CLIENT KILL TYPE pubsub``) whenever the
    client's resync test asks, by creating ``signal``; removes it once done."""

    def __init__(self, redis_url: str, signal: Path) -> None:
        super().__init__(daemon=True)
        self._redis = redis.Redis.from_url(redis_url)
        self._signal = signal
        self._stopped = threading.Event()
        self.killed = 0

    def run(self) -> None:
        while not self._stopped.wait(0.05):
            if self._signal.exists():
                self.killed += int(self._redis.client_kill_filter(_type="pubsub"))
                self._signal.unlink()

    def stop(self) -> None:
        self._stopped.set()
        self.join(timeout=5)
        self._redis.close()


def test_the_javascript_client_keeps_presence_right(
    tmp_path: Path, redis_url: str, mongo_url: str
) -> None:
    node = shutil.which("node")
    assert node is not None, "Node.js is part of the test machine (make test installs it)"
    assert (CLIENT / "node_modules" / "socket.io-client").is_dir(), "run make test (npm ci)"
    env = clean_env(
        **service_env(redis_url, mongo_url),
        PRESENCE_OFFLINE_GRACE_S="0.5",
        PRESENCE_IDLE_AWAY_S="1.5",
        PRESENCE_ROOM_FANOUT_LIMIT="2",
    )
    workers = start_ready_workers(env, tmp_path, 2)
    try:
        ann, bob, cat = (account(workers[0].url, name) for name in ("ann", "bob", "cat"))
        status, body = http(
            "POST",
            workers[0].url + "/api/conversations",
            {"title": "pair", "memberIds": [bob["id"]]},
            headers={"Authorization": f"Bearer {ann['token']}"},
        )
        assert status == 201, body
        cid = body["data"]["id"]
        status, body = http(
            "POST",
            workers[0].url + "/api/conversations",
            {"title": "crowd", "memberIds": [bob["id"], cat["id"]]},
            headers={"Authorization": f"Bearer {ann['token']}"},
        )
        assert status == 201, body
        crowd = body["data"]["id"]
        signals = tmp_path / "signals"
        signals.mkdir()
        killer = PubsubKiller(redis_url, signals / "kill-pubsub")
        killer.start()
        done = subprocess.run(
            [node, "--test", "test/store.test.js", "test/live.test.js"],
            cwd=CLIENT,
            env={
                "PATH": str(Path(node).parent),
                "PRESENCE_TEST_URLS": f"{workers[0].url},{workers[1].url}",
                "PRESENCE_TEST_TOKEN_A": ann["token"],
                "PRESENCE_TEST_TOKEN_B": bob["token"],
                "PRESENCE_TEST_ID_B": bob["id"],
                "PRESENCE_TEST_CONVERSATION": cid,
                "PRESENCE_TEST_CROWD": crowd,
                "PRESENCE_TEST_TOKEN_C": cat["token"],
                "PRESENCE_TEST_ID_C": cat["id"],
                "PRESENCE_TEST_SIGNALS": str(signals),
            },
            capture_output=True,
            text=True,
            timeout=90,
        )
        killer.stop()
        assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
        assert "# fail 0" in done.stdout and "# pass 9" in done.stdout, done.stdout[-2000:]
        assert killer.killed >= 1, "the resync test had the workers' listeners interrupted"
        # The published types describe what a TypeScript front end writes.
        typed = subprocess.run(
            [node, "node_modules/typescript/bin/tsc", "-p", "tsconfig.json"],
            cwd=CLIENT,
            env={"PATH": str(Path(node).parent)},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert typed.returncode == 0, typed.stdout + typed.stderr
    finally:
        for worker in workers:
            worker.stop()
