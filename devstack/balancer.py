"""nginx as the load balancer of a local topology, from ``deploy/nginx.conf.template``."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from devstack.servers import ROOT, stop_process, wait_for_port


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


def spawn_nginx(
    conf_dir: Path,
    port: int,
    worker_ports: list[int],
    *,
    prefix: Sequence[str] = (),
    detach: bool = False,
) -> subprocess.Popen[bytes]:
    """nginx on ``127.0.0.1:port`` in front of the workers, its configuration and logs in
    ``conf_dir``; the configuration passes ``nginx -t`` before it starts, and it listens
    before this returns."""
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    conf = conf_dir / "nginx.conf"
    conf.write_text(nginx_config(conf_dir, port, worker_ports))
    base = [binary, "-c", str(conf), "-p", str(conf_dir)]
    checked = subprocess.run([*base, "-t"], capture_output=True, text=True, check=False)
    if checked.returncode != 0:
        raise RuntimeError(f"nginx -t refused {conf}:\n{checked.stderr}")
    with (conf_dir / "nginx.out").open("ab") as out:
        process = subprocess.Popen(
            [*prefix, *base, "-g", "daemon off;"],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=detach,
        )
    try:
        wait_for_port(port)
    except RuntimeError:
        stop_process(process)
        raise
    return process
