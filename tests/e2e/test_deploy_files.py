"""The deployment files are valid for the tools that read them, and every metric the dashboard
and the alert rules use is exported by a running worker."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from devstack.balancer import nginx_config
from presence.config import load_settings
from tests.e2e.conftest import WorkersFactory
from tests.support.processes import http

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


def tool(name: str, *fallbacks: str) -> str:
    found = shutil.which(name) or next((f for f in fallbacks if Path(f).exists()), None)
    assert found is not None, f"{name} is required: run scripts/test-services.sh"
    return found


def run(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def test_nginx_accepts_the_generated_configuration(tmp_path: Path) -> None:
    conf = tmp_path / "nginx.conf"
    conf.write_text(nginx_config(tmp_path, 3999, [4001, 4002, 4003]))
    run(tool("nginx", "/usr/sbin/nginx"), "-t", "-c", str(conf), "-p", str(tmp_path))


def _location_block(conf: str) -> list[str]:
    """The directives of ``location / { ... }``, comments and blank lines left out."""
    body = conf.split("location / {", 1)[1].split("}", 1)[0]
    return [line.strip() for line in body.splitlines() if line.strip() and "#" not in line]


def test_the_compose_load_balancer_is_valid_and_proxies_as_the_template_does(
    tmp_path: Path,
) -> None:
    compose = (DEPLOY / "nginx.conf").read_text()
    template = (DEPLOY / "nginx.conf.template").read_text()
    # Same proxying (upgrade, forwarded address, timeouts) and the same session stickiness.
    assert _location_block(compose) == _location_block(template)
    assert "hash $remote_addr consistent;" in compose
    # `presence` resolves only on the compose network: point it at loopback to let nginx parse
    # and check everything else, with its run-time files in a folder of this test.
    local = compose.replace("server presence:3000", "server 127.0.0.1:3000").replace(
        "listen 80;", "listen 127.0.0.1:3998;"
    )
    paths = "\n".join(
        f"    {name}_temp_path {tmp_path}/{name};"
        for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    local = local.replace("http {", f"http {{\n    access_log {tmp_path}/access.log;\n{paths}", 1)
    local = f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log warn;\n" + local
    conf = tmp_path / "nginx.conf"
    conf.write_text(local)
    run(tool("nginx", "/usr/sbin/nginx"), "-t", "-c", str(conf), "-p", str(tmp_path))


def test_prometheus_configuration_and_alert_rules() -> None:
    promtool = tool("promtool")
    run(promtool, "check", "config", str(DEPLOY / "prometheus.yml"))
    result = run(promtool, "test", "rules", str(DEPLOY / "alerts_test.yml"))
    assert "SUCCESS" in result.stdout + result.stderr
    rules = (DEPLOY / "alerts.yml").read_text()
    tests = (DEPLOY / "alerts_test.yml").read_text()
    for alert in re.findall(r"- alert: (\w+)", rules):
        # A firing case (exp_alerts with labels) and a non-firing one (exp_alerts: []).
        blocks = [b for b in tests.split("alertname: ")[1:] if b.startswith(alert)]
        assert any("exp_labels" in b.split("alertname")[0] for b in blocks), alert
        assert any(b.split("\n", 2)[1].strip() == "exp_alerts: []" for b in blocks), alert


def test_docker_compose_file_is_valid() -> None:
    env = {**os.environ, "PRESENCE_JWT_SECRET": "x" * 32}
    result = run(tool("docker-compose"), "-f", str(ROOT / "docker-compose.yml"), "config", env=env)
    run(tool("docker-compose"), "-f", str(ROOT / "docker-compose.yml"), "config", "-q", env=env)
    assert "replicas: 3" in result.stdout


@pytest.mark.parametrize(
    ("profile", "url", "services"),
    [
        (
            "sentinel",
            "redis+sentinel://sentinel-1:26379,sentinel-2:26379,sentinel-3:26379/mymaster/0",
            {"redis-primary", "redis-replica", "sentinel-1", "sentinel-2", "sentinel-3"},
        ),
        (
            "cluster",
            "redis+cluster://redis-node-1:6379,redis-node-2:6379,redis-node-3:6379",
            {*(f"redis-node-{n}" for n in range(1, 7)), "redis-cluster-init"},
        ),
    ],
)
def test_each_redis_profile_of_the_compose_file_is_valid(
    profile: str, url: str, services: set[str]
) -> None:
    """The profiles the compose file's header names, with the URL it gives for each: valid,
    with every service of the topology, and the workers started with that URL."""
    env = {**os.environ, "PRESENCE_JWT_SECRET": "x" * 32, "PRESENCE_REDIS_URL": url}
    compose = ("-f", str(ROOT / "docker-compose.yml"), "--profile", profile)
    result = run(tool("docker-compose"), *compose, "config", env=env)
    listed = set(re.findall(r"^  ([a-z0-9-]+):$", result.stdout, re.M))
    assert services <= listed, services - listed
    assert f"PRESENCE_REDIS_URL: {url}" in result.stdout
    assert url in (ROOT / "docker-compose.yml").read_text()
    load_settings(
        {
            "PRESENCE_REDIS_URL": url,
            "PRESENCE_MONGO_URL": "mongodb://m",
            "PRESENCE_JWT_SECRET": "x" * 32,
        }
    )


def exported_names(metrics_text: str) -> set[str]:
    names: set[str] = set()
    for line in metrics_text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            names.add(name)
            if kind == "histogram":
                names.update(name + suffix for suffix in ("_bucket", "_sum", "_count"))
    return names


def test_every_metric_of_the_dashboard_and_the_rules_is_exported(
    start_workers: WorkersFactory,
) -> None:
    worker = asyncio.run(start_workers(1))[0]
    status, text = http("GET", worker.url + "/metrics")
    assert status == 200
    exported = exported_names(str(text))
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "presence.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    exprs.append((DEPLOY / "alerts.yml").read_text())
    used = {name for expr in exprs for name in re.findall(r"\bpresence_[a-z_]+", expr)}
    assert used, "no metric found in the dashboard and the rules"
    assert sorted(used - exported) == []
