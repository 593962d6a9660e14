"""Thousands of stock ``socket.io-client`` connections, in Node processes split over the load
core (one Python process holds ~2000 before it becomes the bottleneck; Node holds far more)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from bench.harness import LOAD_CPU, ROOT, taskset

SCRIPT = ROOT / "bench" / "js" / "clients.mjs"


def available() -> bool:
    return shutil.which("node") is not None and (ROOT / "bench/js/node_modules").exists()


class NodeClients:
    def __init__(
        self,
        run_dir: Path,
        urls: list[str],
        tokens: list[str],
        count: int,
        *,
        tabs: int = 1,
        processes: int = 2,
        concurrency: int = 200,
    ) -> None:
        tokens_file = run_dir / "client-tokens.txt"
        tokens_file.write_text("\n".join(tokens) + "\n")
        self._processes: list[subprocess.Popen[str]] = []
        share = -(-count // processes)
        for index in range(processes):
            first = index * share
            mine = min(share, count - first)
            if mine <= 0:
                break
            env = {
                "PATH": os.environ.get("PATH", ""),
                "URLS": ",".join(urls),
                "TOKENS_FILE": str(tokens_file),
                "TABS": str(tabs),
                "COUNT": str(mine),
                "FIRST": str(first),
                "CONCURRENCY": str(max(1, concurrency // processes)),
                "DEFLATE": os.environ.get("BENCH_DEFLATE", "1"),
            }
            process = subprocess.Popen(
                [*taskset(LOAD_CPU), "node", str(SCRIPT)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                env=env,
                cwd=SCRIPT.parent,
            )
            self._processes.append(process)
        for process in self._processes:
            self._expect(process, "ready")

    @staticmethod
    def _expect(process: subprocess.Popen[str], event: str) -> dict[str, Any]:
        assert process.stdout is not None
        while True:
            line = process.stdout.readline()
            if not line:
                raise RuntimeError(f"client process exited waiting for {event!r}")
            message: dict[str, Any] = json.loads(line)
            if message.get("event") == event:
                return message

    def command(self, name: str, answer: str) -> list[dict[str, Any]]:
        for process in self._processes:
            assert process.stdin is not None
            process.stdin.write(name + "\n")
            process.stdin.flush()
        return [self._expect(p, answer) for p in self._processes]

    def connect(self) -> dict[str, Any]:
        replies = self.command("connect", "connected")
        return {
            "ok": sum(r["ok"] for r in replies),
            "failed": sum(r["failed"] for r in replies),
            "seconds": max(r["seconds"] for r in replies),
        }

    def disconnect(self) -> float:
        return float(max(r["seconds"] for r in self.command("disconnect", "disconnected")))

    def report(self) -> dict[str, Any]:
        replies = self.command("report", "report")
        delays = [ms for r in replies for ms in r["reconnectMs"]]
        return {
            "connected": sum(r["connected"] for r in replies),
            "reconnects": len(delays),
            "reconnect_ms": delays,
            "refused_retries": sum(r.get("refusedRetries", 0) for r in replies),
        }

    def close(self) -> None:
        for process in self._processes:
            if process.poll() is None:
                assert process.stdin is not None
                try:
                    process.stdin.write("quit\n")
                    process.stdin.flush()
                    process.wait(timeout=15)
                except (OSError, subprocess.TimeoutExpired):
                    process.kill()
                    process.wait()
