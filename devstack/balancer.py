"""nginx as the load balancer of a local topology, from ``deploy/nginx.conf.template``."""

from __future__ import annotations

from pathlib import Path

from devstack.servers import ROOT


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
