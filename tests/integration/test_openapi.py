"""The served OpenAPI document is valid and every real response matches it."""

from __future__ import annotations

import re
from typing import Any

from jsonschema import Draft202012Validator
from openapi_spec_validator import validate

from presence.api import openapi, parsing
from presence.app import REALTIME, create_app
from presence.config import load_settings
from presence.contract import events
from tests.conftest import ClusterFactory
from tests.support.cluster import Cluster


class Recorder:
    def __init__(self, cluster: Cluster, document: dict[str, Any]) -> None:
        self.cluster = cluster
        self.document = document
        self.seen: set[tuple[str, str, str]] = set()
        self.routes = [
            (re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", path) + "$"), path)
            for path in document["paths"]
        ]

    def template(self, path: str) -> str:
        bare = path.split("?")[0]
        for pattern, template in self.routes:
            if pattern.match(bare):
                return str(template)
        raise AssertionError(f"{path} is not in the OpenAPI document")

    async def call(self, method: str, path: str, **kwargs: Any) -> Any:
        resp = await self.cluster[0].client.request(method, path, **kwargs)
        template = self.template(path)
        operation = self.document["paths"][template][method.lower()]
        status = str(resp.status)
        assert status in operation["responses"], (
            f"{method} {template} answered undocumented {status}"
        )
        content = operation["responses"][status]["content"]
        if "application/json" in content:
            body = await resp.json()
            schema = {**content["application/json"]["schema"], **self.document_refs()}
            Draft202012Validator(schema).validate(body)
        else:
            body = await resp.text()
        self.seen.add((method.lower(), template, status))
        return body

    def document_refs(self) -> dict[str, Any]:
        return {"components": self.document["components"]}


async def test_real_responses_match_the_served_document(make_cluster: ClusterFactory) -> None:
    cluster = await make_cluster(1)
    document = await (await cluster[0].client.get("/openapi.json")).json()
    validate(document)
    r = Recorder(cluster, document)
    admin = {"Authorization": f"Bearer {await cluster.admin_token()}"}

    body = await r.call(
        "POST",
        "/api/auth/register",
        json={"username": "ann", "email": "ann@example.test", "password": "password-1"},
    )
    ann = {"Authorization": f"Bearer {body['token']}"}
    await r.call(
        "POST",
        "/api/auth/register",
        json={"username": "ann", "email": "ann@example.test", "password": "password-1"},
    )
    await r.call("POST", "/api/auth/register", json={})
    body = await r.call(
        "POST",
        "/api/auth/register",
        json={"username": "bob", "email": "bob@example.test", "password": "password-1"},
    )
    bob_id = body["user"]["id"]
    await r.call(
        "POST", "/api/auth/login", json={"email": "ann@example.test", "password": "password-1"}
    )
    await r.call(
        "POST", "/api/auth/login", json={"email": "ann@example.test", "password": "wrong-one"}
    )

    body = await r.call(
        "POST", "/api/conversations", headers=ann, json={"title": "t", "memberIds": [bob_id]}
    )
    cid = body["data"]["id"]
    await r.call("GET", "/api/conversations", headers=ann)
    body = await r.call(
        "POST", f"/api/conversations/{cid}/share-links", headers=ann, json={"expiresInSeconds": 60}
    )
    link = body["data"]["id"]
    await r.call("POST", "/api/conversations/nope/share-links", headers=ann, json={})
    body = await r.call("POST", f"/api/anonymous/join/{link}", json={"nickname": "guest"})
    guest = {"X-Session-Token": body["sessionToken"]}
    await r.call("POST", "/api/anonymous/join/nope", json={"nickname": "guest"})
    await r.call("GET", "/api/users/me", headers=ann)
    await r.call("GET", "/api/users/me", headers=guest)
    await r.call("GET", "/api/users/me")
    await r.call("PUT", "/api/users/me/status", headers=guest, json={"status": "away"})
    await r.call("PUT", "/api/users/me/status", headers=ann, json={"status": "nope"})
    await r.call(
        "PUT",
        "/api/users/me/status",
        headers=ann,
        json={"status": "dnd", "text": "focus", "until": "2999-01-01T00:00:00Z"},
    )
    await r.call("PUT", "/api/users/me/privacy", headers=ann, json={"lastSeen": "approximate"})
    await r.call("PUT", "/api/users/me/privacy", headers=ann, json={"lastSeen": "nope"})
    await r.call("GET", "/api/users/me/privacy", headers=ann)
    await r.call("GET", "/api/users/me/privacy", headers=guest)
    await r.call("POST", "/api/presence/heartbeat", headers=guest)
    await r.call("POST", "/api/presence/heartbeat")
    await r.call("GET", f"/api/users/presence?ids={bob_id}", headers=ann)
    await r.call("GET", f"/api/users/presence?ids={bob_id}", headers=guest)
    await r.call("GET", f"/api/conversations/{cid}/presence", headers=guest)
    await r.call("GET", "/api/conversations/nope/presence", headers=ann)
    await r.call("GET", "/maintenance/stats", headers=admin)
    await r.call("GET", "/maintenance/stats", headers=ann)
    await r.call("GET", "/maintenance/status-metrics", headers=admin)
    await r.call("POST", "/maintenance/status-metrics/reset", headers=admin)
    await r.call(
        "POST", "/maintenance/user-status", headers=admin, json={"userId": bob_id, "isOnline": True}
    )
    await r.call(
        "POST",
        "/maintenance/user-status",
        headers=admin,
        json={"userId": "nobody", "isOnline": True},
    )
    tokens = cluster[0].c.service_tokens
    service = {
        "Authorization": f"Bearer {await tokens.create('all', ('presence:read', 'events:read'))}"
    }
    await r.call("POST", "/api/service/presence", headers=service, json={"ids": [bob_id, "x"]})
    await r.call("POST", "/api/service/presence", headers=ann, json={"ids": [bob_id]})
    await r.call("POST", "/api/service/presence", headers=service, json={"ids": []})
    await r.call("GET", "/api/service/events?limit=5", headers=service)
    await r.call("GET", "/api/service/events?after=x", headers=service)
    await r.call("GET", "/api/service/events")
    sync = {"Authorization": f"Bearer {await tokens.create('sync', ('directory:write',))}"}
    await r.call("PUT", "/api/service/users/plat-1", headers=sync, json={"username": "P"})
    await r.call("PUT", "/api/service/users/a%20b", headers=sync, json={"username": "P"})
    await r.call(
        "PUT",
        "/api/service/conversations/team-1",
        headers=sync,
        json={"title": "T", "memberIds": ["plat-1", bob_id]},
    )
    await r.call("PUT", "/api/service/conversations/team-2", headers=service, json={})
    await r.call(
        "POST",
        "/api/service/conversations:batch",
        headers=sync,
        json={"conversations": [{"id": "team-3", "title": "T", "memberIds": ["plat-1"]}]},
    )
    await r.call("DELETE", "/api/service/conversations/team-1", headers=sync)
    await r.call("DELETE", "/api/service/conversations/team-1", headers=sync)
    await r.call("GET", "/healthz")
    await r.call("GET", "/readyz")
    await r.call("GET", "/metrics")

    operations = {(m, p) for p, ops in document["paths"].items() for m in ops}
    assert operations == {(m, p) for m, p, _ in r.seen}, "an operation was never exercised"


def test_every_route_and_event_has_its_model() -> None:
    """Every route of the app is an operation of the document, served by the same handler;
    every handler that reads a body declares its model (the document shows it); every event a
    socket may send or hear has its payload model."""
    app = create_app(load_settings({}))
    # The console page and its files, the document itself, Socket.IO (under x-socketio).
    undocumented = {"/", "/console", "/openapi.json", "/socket.io/"}
    served: dict[tuple[str, str], Any] = {}
    for route in app.router.routes():
        path = route.resource.canonical if route.resource is not None else ""
        if path in undocumented or route.method == "HEAD":
            continue
        served[
            (re.sub(r"\{([a-z_]+)\}", lambda m: "{" + _camel(m[1]) + "}", path), route.method)
        ] = route.handler
    documented = {
        (path, method.upper()): op[openapi.HANDLER]
        for path, operations in openapi.PATHS.items()
        for method, op in operations.items()
    }
    assert served == documented
    assert set(parsing.DECLARED) <= set(documented.values())
    document = openapi.document()
    for (path, method), handler in documented.items():
        op = document["paths"][path][method.lower()]
        declared = parsing.DECLARED.get(handler)
        body = op.get("requestBody", {}).get("content", {}).get("application/json", {})
        assert body.get("schema") == (
            None
            if declared is None
            else {"$ref": f"#/components/schemas/{declared.model.__name__}"}
        ), (path, method)
    inbound = set(events.INBOUND)
    assert app[REALTIME].events == inbound
    assert set(document["x-socketio"]["clientToServer"]) == inbound
    assert set(document["x-socketio"]["serverToClient"]) == set(events.OUTBOUND)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)
