"""The standalone URL forms the README names besides ``redis://``, each used by real workers
the way an operator writes it: ``unix://`` (a Redis listening on a Unix socket) and
``rediss://`` (TLS, the server's certificate checked against the operator's CA). Sentinel and
Cluster URLs run the realtime and maintenance suites (``EVERY_REDIS_MODE``)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.servers import Server, free_port, redis_server
from tests.conftest import service_env
from tests.support.processes import (
    clean_env,
    http,
    register_over_http,
    start_ready_workers,
)


def _workers_serve(tmp_path: Path, redis_url: str, mongo_url: str) -> None:
    """Two workers on ``redis_url``: both ready, and the throttle shared between them."""
    env = clean_env(**service_env(redis_url, mongo_url))
    workers = start_ready_workers(env, tmp_path, 2)
    try:
        auth = register_over_http(workers[0].url, "ann")
        for worker in workers * 2:
            status, _ = http("POST", worker.url + "/api/presence/heartbeat", headers=auth)
            assert status == 200
        status, me = http("GET", workers[1].url + "/api/users/me", headers=auth)
        assert status == 200 and me["data"]["presence"]["isOnline"] is True
    finally:
        for worker in workers:
            worker.stop()


@pytest.fixture
def unix_redis(tmp_path: Path) -> Iterator[tuple[Server, Path]]:
    socket = tmp_path / "redis.sock"
    server = redis_server(extra=["--unixsocket", str(socket), "--unixsocketperm", "700"])
    server.start()
    yield server, socket
    server.cleanup()


def test_workers_serve_on_a_unix_socket_url(
    tmp_path: Path, unix_redis: tuple[Server, Path], mongo_url: str
) -> None:
    _, socket = unix_redis
    _workers_serve(tmp_path, f"unix://{socket}?db=0", mongo_url)


def _certificates(folder: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 signed by it."""
    ca_key, ca, key, csr, cert = (
        folder / n for n in ("ca.key", "ca.pem", "r.key", "r.csr", "r.pem")
    )
    run = [
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=presence test CA", "-keyout", str(ca_key), "-out", str(ca)],
        ["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
         "-keyout", str(key), "-out", str(csr)],
        ["openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
         "-CAcreateserial", "-days", "2", "-out", str(cert),
         "-extfile", str(folder / "san.cnf")],
    ]  # fmt: skip
    (folder / "san.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    for argv in run:
        subprocess.run(argv, check=True, capture_output=True, timeout=60)
    return ca, cert, key


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    ca, cert, key = _certificates(tmp_path)
    tls_port = free_port()
    server = redis_server(
        extra=[
            "--tls-port", str(tls_port), "--tls-cert-file", str(cert),
            "--tls-key-file", str(key), "--tls-ca-cert-file", str(ca),
            "--tls-auth-clients", "no",
        ]
    )  # fmt: skip
    server.start()
    yield tls_port, ca
    server.cleanup()


def test_workers_serve_on_a_tls_url_checking_the_servers_certificate(
    tmp_path: Path, tls_redis: tuple[int, Path], mongo_url: str
) -> None:
    port, ca = tls_redis
    _workers_serve(tmp_path, f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={ca}", mongo_url)
