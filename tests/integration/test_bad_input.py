"""Guarantee 7: malformed JSON, wrong types and oversized bodies get the JSON error shape with
the right status on every endpoint, and the worker keeps serving."""

from __future__ import annotations

from typing import Any

from tests.conftest import ClusterFactory

BIG = b'{"x": "' + b"a" * (100 * 1024) + b'"}'


async def test_every_endpoint_answers_bad_input_with_a_clear_error(
    make_cluster: ClusterFactory,
) -> None:
    cluster = await make_cluster(1)
    client = cluster[0].client
    admin = {"Authorization": f"Bearer {await cluster.admin_token()}"}
    token, _ = await cluster.register("alice")
    user = {"Authorization": f"Bearer {token}"}
    resp = await client.post(
        "/api/conversations", json={"title": "t", "memberIds": []}, headers=user
    )
    cid = (await resp.json())["data"]["id"]
    resp = await client.post(f"/api/conversations/{cid}/share-links", headers=user)
    link = (await resp.json())["data"]["id"]
    tokens = cluster[0].c.service_tokens
    reader = {"Authorization": f"Bearer {await tokens.create('r', ('presence:read',))}"}
    sync = {"Authorization": f"Bearer {await tokens.create('s', ('directory:write',))}"}

    bodies: list[tuple[str, str, dict[str, str], list[Any]]] = [
        (
            "POST",
            "/api/auth/register",
            {},
            [
                {"username": "x", "email": "x@example.test"},
                {"username": 1, "email": "x@example.test", "password": "password-1"},
                {"username": "x", "email": "not-an-email", "password": "password-1"},
                {"username": "x", "email": "x@example.test", "password": "short"},
                {"username": "", "email": "x@example.test", "password": "password-1"},
                # Control characters are never part of a name or an address (and a NUL in a
                # query string is an error on some MongoDB-compatible servers, not a miss).
                {"username": "x\u0000y", "email": "x@example.test", "password": "password-1"},
                {"username": "x", "email": "x\u0000@example.test", "password": "password-1"},
            ],
        ),
        (
            "POST",
            "/api/auth/login",
            {},
            [
                {"email": 5, "password": "p"},
                {"email": "a@b.c"},
                {"email": "\u00ca\u0000\u0090@b.c", "password": "password-1"},
            ],
        ),
        (
            "POST",
            f"/api/anonymous/join/{link}",
            {},
            [{}, {"nickname": ["x"]}, {"nickname": ""}, {"nickname": "line\nbreak"}],
        ),
        ("PUT", "/api/users/me/status", user, [{}, {"status": "busy"}, {"status": 1}]),
        (
            "POST",
            "/api/conversations",
            user,
            [
                {"title": "t"},
                {"title": "t", "memberIds": "abc"},
                {"title": 3, "memberIds": []},
                {"title": "t", "memberIds": ["nobody"]},
                {"title": "t", "memberIds": ["\u0000"]},
                {"title": "t\u001b[31m", "memberIds": []},
            ],
        ),
        (
            "POST",
            f"/api/conversations/{cid}/share-links",
            user,
            [
                {"expiresInSeconds": "soon"},
                {"expiresInSeconds": -1},
                {"expiresInSeconds": True},
            ],
        ),
        ("POST", "/maintenance/user-status", admin, [{"userId": 1, "isOnline": True}]),
        ("POST", "/api/service/presence", reader, [{}, {"ids": "a"}, {"ids": [1]}, {"ids": []}]),
    ]
    # The directory takes member lists of up to 100 000 ids: bodies up to 16 MiB.
    imports: list[tuple[str, str, dict[str, str], list[Any]]] = [
        ("PUT", "/api/service/users/u-1", sync, [{}, {"username": 1}, {"username": "x",
                                                                     "isActive": "no"}]),
        ("PUT", "/api/service/users/a%20b", sync, [{"username": "x"}]),
        ("PUT", "/api/service/conversations/c-1", sync, [
            {"title": "t"}, {"title": "t", "memberIds": "abc"}, {"title": "t", "memberIds": [1]},
            {"title": "t", "memberIds": ["not url safe"]},
            {"title": "t", "memberIds": [f"m{i}" for i in range(100_001)]},
        ]),
        ("POST", "/api/service/conversations:batch", sync, [
            {}, {"conversations": []},
            {"conversations": [{"id": "ok", "title": "t", "memberIds": []},
                               {"id": "not ok", "title": "t", "memberIds": []}]},
        ]),
    ]  # fmt: skip
    for method, path, headers, wrong_types in imports:
        for raw in (b"{oops", b"[1, 2]", b"null"):
            resp = await client.request(method, path, data=raw, headers=headers)
            assert (resp.status, (await resp.json())["error"]["code"]) == (400, "invalid_json")
        for body in wrong_types:
            resp = await client.request(method, path, json=body, headers=headers)
            assert resp.status == 400, (path, body)
    # A refused batch stored nothing, not even its valid first conversation.
    assert await cluster[0].store.get_conversation("ok") is None
    assert await cluster[0].store.get_conversation("c-1") is None
    for method, path, headers, wrong_types in bodies:
        for raw in (b"{oops", b"\xff\xfe", b"[1, 2]", b'"text"', b"null"):
            resp = await client.request(method, path, data=raw, headers=headers)
            assert resp.status == 400, (path, raw)
            assert (await resp.json())["error"]["code"] == "invalid_json", (path, raw)
        for body in wrong_types:
            resp = await client.request(method, path, json=body, headers=headers)
            assert resp.status == 400, (path, body)
            error = (await resp.json())["error"]
            assert set(error) == {"code", "message"} and error["message"], (path, body)
        resp = await client.request(method, path, data=BIG, headers=headers)
        assert resp.status == 413, path
        assert (await resp.json())["error"]["code"] == "payload_too_large"

    queries = [
        ("GET", "/api/users/presence", user, 400),
        ("GET", "/api/users/presence?ids=", user, 400),
        ("GET", "/api/conversations/" + "x" * 129 + "/presence", user, 400),
        ("GET", "/api/conversations/x%00y/presence", user, 400),
        ("GET", "/api/nothing-here", {}, 404),
        ("DELETE", "/api/users/me", user, 405),
        ("GET", "/api/users/me", {"Authorization": "Basic abc"}, 401),
        ("GET", "/api/users/me", {"Authorization": "Bearer " + "a" * 5000}, 401),
        ("GET", "/api/users/me", {"X-Session-Token": "\u00e9" * 20}, 401),
    ]
    for method, path, headers, status in queries:
        resp = await client.request(method, path, headers=headers)
        assert resp.status == status, path
        body = await resp.json()
        assert body["success"] is False and body["error"]["code"], path

    # Headers beyond 8 KiB never reach the app: the HTTP parser refuses them with a plain 400.
    resp = await client.get("/api/users/me", headers={"Authorization": "Bearer " + "a" * 10_000})
    assert resp.status == 400

    resp = await client.post(
        "/api/auth/register",
        json={"username": "alice2", "email": "ALICE@example.test", "password": "password-1"},
    )
    assert resp.status == 409
    assert (await client.get("/healthz")).status == 200
    assert (await client.get("/api/users/me", headers=user)).status == 200


async def test_cors_answers_only_configured_origins(make_cluster: ClusterFactory) -> None:
    cluster = await make_cluster(1, cors_origins=("https://chat.example",))
    client = cluster[0].client
    preflight = {
        "Origin": "https://chat.example",
        "Access-Control-Request-Method": "PUT",
        "Access-Control-Request-Headers": "authorization",
    }
    resp = await client.options("/api/users/me/status", headers=preflight)
    assert resp.status == 204
    assert resp.headers["Access-Control-Allow-Origin"] == "https://chat.example"
    assert "X-Session-Token" in resp.headers["Access-Control-Allow-Headers"]
    resp = await client.get("/healthz", headers={"Origin": "https://chat.example"})
    assert resp.headers["Access-Control-Allow-Origin"] == "https://chat.example"
    resp = await client.get("/healthz", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in resp.headers
