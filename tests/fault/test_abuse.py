"""Scenarios 6, 7, 8 and 10: forged and stale credentials, rate limits spread over workers, and
privacy. Every refused attempt is watched for side effects: no write to any presence key in
Redis (MONITOR), no change to any user or guest document."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import jwt
import pytest
import socketio

from tests.conftest import JWT_SECRET
from tests.fault.report import Row
from tests.fault.sideeffects import Watch
from tests.fault.stack import Stack
from tests.support.accounts import call, conversation, register
from tests.support.identity_provider import IdentityProvider, new_key
from tests.support.processes import scrape
from tests.support.sio import Listener
from tests.support.waiting import until

QUIET = {
    # No sweep during the watched windows: only the attempts can cause commands.
    "maintenance_interval_s": "300",
}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    return ".".join(
        [b64(json.dumps(header).encode()), b64(json.dumps(claims).encode()), b64(signature)]
    )


def hs_by_hand(claims: dict[str, Any], key: str, alg: str, kid: str | None = None) -> str:
    """Signed without PyJWT's guard rails: a public key as an HMAC secret (the key-confusion
    forgery), or an algorithm the service does not accept."""
    header: dict[str, Any] = {"alg": alg, "typ": "JWT"}
    if kid is not None:
        header["kid"] = kid
    signing_input = ".".join([b64(json.dumps(header).encode()), b64(json.dumps(claims).encode())])
    digest_of = {"HS256": hashlib.sha256, "HS512": hashlib.sha512}[alg]
    digest = hmac.new(key.encode(), signing_input.encode(), digest_of).digest()
    return f"{signing_input}.{b64(digest)}"


def platform_matrix(provider: IdentityProvider, victim: str) -> dict[str, Any]:
    """Tokens naming the victim that claim to come from the host platform (its JWKS is
    configured): algorithm confusion with its published keys, a made-up key, another issuer."""
    rsa_key = provider.keys[0]
    ec_key = provider.keys[1]
    now = int(time.time())
    claims = {"sub": victim, "iss": provider.issuer, "aud": provider.audience, "iat": now,
              "exp": now + 3600}  # fmt: skip
    public_pem = rsa_key.public_pem().decode()
    return {
        "platform: HS256 signed with its published RSA key": hs_by_hand(
            claims, public_pem, "HS256", kid=rsa_key.kid
        ),
        "platform: alg none naming its key": unsigned({"alg": "none", "kid": rsa_key.kid}, claims),
        "platform: ES256 header on its RSA key": jwt.encode(
            claims, ec_key.private, algorithm="ES256", headers={"kid": rsa_key.kid}
        ),
        "platform: RS256 header on its EC key": jwt.encode(
            claims, rsa_key.private, algorithm="RS256", headers={"kid": ec_key.kid}
        ),
        "platform: a key it never published": jwt.encode(
            claims, new_key("RSA").private, algorithm="RS256", headers={"kid": "made-up"}
        ),
        "platform: another issuer": provider.token(victim, iss="https://evil.test"),
        "platform: another audience": provider.token(victim, aud="someone-else"),
        "platform: expired": provider.token(victim, lifetime_s=-120),
        "platform: unknown user (no provisioning)": provider.token("platform-nobody"),
    }


def jwt_matrix(victim: str, inactive: str) -> dict[str, Any]:
    now = int(time.time())
    good = {"sub": victim, "iat": now, "exp": now + 3600}
    valid = jwt.encode(good, JWT_SECRET, algorithm="HS256")
    head, _, signature = valid.split(".")
    tampered_body = b64(json.dumps({**good, "sub": inactive}).encode())
    public_pem = (
        "-----BEGIN PUBLIC KEY-----\n"
        "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n"
        "-----END PUBLIC KEY-----\n"
    )
    matrix: dict[str, Any] = {
        f"alg {alg}": unsigned({"alg": alg, "typ": "JWT"}, good)
        for alg in ("none", "None", "NONE", "nOnE")
    }
    matrix |= {
        "RS256 header, forged signature": unsigned(
            {"alg": "RS256"}, good, secrets.token_bytes(256)
        ),
        "HS256 signed with a public key": hs_by_hand(good, public_pem, "HS256"),
        "HS512 with the right secret": hs_by_hand(good, JWT_SECRET, "HS512"),
        "wrong key": jwt.encode(good, "another-secret-that-is-long-enough-0123456789"),
        "expired": jwt.encode({**good, "exp": now - 120}, JWT_SECRET),
        "not yet valid": jwt.encode({**good, "nbf": now + 3600}, JWT_SECRET),
        "no exp": jwt.encode({"sub": victim, "iat": now}, JWT_SECRET),
        "no sub": jwt.encode({"iat": now, "exp": now + 3600}, JWT_SECRET),
        "sub not a string": jwt.encode({**good, "sub": 42}, JWT_SECRET),
        "tampered sub, original signature": f"{head}.{tampered_body}.{signature}",
        "truncated signature": valid[:-6],
        "huge (64 KiB)": valid + "A" * 65536,
        "garbage": "not-a-jwt",
        "binary garbage": "\u00ff\u00fe" * 50,
        "unknown user": jwt.encode({**good, "sub": "0" * 24}, JWT_SECRET),
        "deactivated user": jwt.encode({**good, "sub": inactive}, JWT_SECRET),
        "token as a list": [valid],
        "token as an object": {"token": valid},
    }
    return matrix


async def raw_call(url: str, headers: dict[str, str]) -> tuple[int, Any]:
    """GET with headers as given; a body that is not JSON comes back as ``{"text": ...}``."""
    try:
        async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as resp:
            text = await resp.text()
            try:
                return resp.status, json.loads(text)
            except ValueError:
                # Only aiohttp's own parser answers in text: a header past its 8 KiB limit.
                return resp.status, {"error": {"code": f"http {resp.status}"}, "text": text}
    except ValueError:  # a header value the client itself will not send
        return 0, {"error": {"code": "not sendable"}}


async def refused_everywhere(
    url: str, credential: Any, *, header: str, auth_key: str
) -> tuple[int, Any, Any, Any]:
    """The same credential over REST, the handshake, and a late ``authenticate``: (HTTP
    status, HTTP error code, connect_error code, late error code)."""
    status, body = 0, None
    if isinstance(credential, str):
        value = f"Bearer {credential}" if header == "Authorization" else credential
        status, body = await raw_call(f"{url}/api/users/me", {header: value})
    client = Listener("attempt")
    try:
        await client.connect(url, auth={auth_key: credential})
        connect_code: Any = "ACCEPTED"
    except socketio.exceptions.ConnectionError:
        # A handshake past the 16 KiB message limit is closed without an answer.
        connect_code = (client.connect_error or {}).get("code", "closed")
    await client.close()
    late = Listener("late-attempt")
    await late.connect(url)
    await late.client.emit("authenticate", {auth_key: credential})
    deadline = time.monotonic() + 3
    while not late.events("error") and not late.disconnected.is_set():
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(0.02)
    if late.events("error"):
        late_code = late.events("error")[0]["code"]
    else:
        # Past the 16 KiB message limit the worker closes the websocket without an answer
        # (the client learns at its next ping): the worker must hold no socket any more.
        assert await scrape(url, "presence_connections") == 0, (
            f"late authenticate unanswered: {credential!r:.40}"
        )
        late_code = "dropped"
    assert late.events("authenticated") == []
    await late.close()
    return status, (body or {}).get("error", {}).get("code"), connect_code, late_code


async def assert_refused_without_trace(
    stack: Stack,
    row: Row,
    attempts: dict[str, Any],
    attempt: Callable[[Any], Awaitable[tuple[int, Any, Any, Any]]],
    control: Callable[[], Awaitable[None]],
) -> None:
    # Negative control: the watch does see the writes of one accepted credential.
    async with Watch(stack) as accepted:
        await control()
    assert accepted.presence_writes(), "the watch saw no write for an accepted credential"
    await asyncio.sleep(2.5)  # past the throttle window, so nothing pending remains
    async with Watch(stack) as watch:
        outcomes = {name: await attempt(credential) for name, credential in attempts.items()}
    for name, (status, rest_code, connect_code, _) in outcomes.items():
        assert status in (401, 400, 0), (name, status, rest_code)
        assert connect_code not in ("ACCEPTED", None), (name, connect_code)
    writes = watch.presence_writes()
    changed = await watch.database_changes()
    row.measure(
        f"control: one accepted credential caused {len(accepted.presence_writes())} presence"
        " writes, seen by the same watch"
    )
    row.measure(
        f"{len(attempts)} credentials x (REST, handshake, late authenticate): all refused;"
        f" {len(watch.commands)} Redis commands watched, {len(writes)} presence writes;"
        f" database documents changed: {changed or 'none'}"
    )
    assert writes == [] and changed == []
    codes = sorted({o[2] for o in outcomes.values()})
    row.measure("handshake refusal codes: " + ", ".join(codes))


@pytest.mark.scenario(6)
async def test_jwt_matrix_refused_without_side_effects(stack: Stack, row: Row) -> None:
    row.done = (
        "every bad JWT (alg none in 4 spellings, RS256 header, HS256 signed with a public key,"
        " HS512, wrong key, expired, not yet valid, no exp, no sub, non-string sub, tampered"
        " payload, truncated signature, 64 KiB, garbage, unknown user, deactivated user, token"
        " as list/object; and, with a host platform's JWKS configured, tokens naming the victim"
        " as its: HS256 signed with its published RSA key, alg none naming its key, ES256 on its"
        " RSA key, RS256 on its EC key, a key it never published, another issuer or audience,"
        " expired, an unknown user without provisioning) sent over REST, in the handshake and"
        " in a late authenticate"
    )
    row.checked = (
        "each refused with a 4xx JSON error / connect_error / error event; Redis MONITOR shows no"
        " write to a presence key; no user or guest document changed"
    )
    for name, value in QUIET.items():
        stack.settings[f"PRESENCE_{name.upper()}"] = value
    stack.settings["PRESENCE_AUTH_FAILURES_PER_ADDRESS"] = "100000"
    stack.settings["PRESENCE_AUTH_FAILURES_PER_ACCOUNT"] = "100000"
    provider = IdentityProvider()
    provider.rotate("EC")
    provider.keys.reverse()  # the RSA key first, the EC key second
    await provider.start()
    stack.settings["PRESENCE_JWT_JWKS_URL"] = provider.jwks_url
    stack.settings["PRESENCE_JWT_ISSUER"] = provider.issuer
    stack.settings["PRESENCE_JWT_AUDIENCE"] = provider.audience
    workers = await stack.start_workers(1)
    url = workers[0].url
    victim, inactive = await register(url, "victim"), await register(url, "inactive")
    client = stack.mongo_client()
    done = await client[stack.db_name]["users"].update_one(
        {"_id": inactive.id}, {"$set": {"isActive": False}}
    )
    await client.close()
    assert done.modified_count == 1
    matrix = jwt_matrix(victim.id, inactive.id) | platform_matrix(provider, victim.id)

    async def attempt(token: Any) -> tuple[int, Any, Any, Any]:
        return await refused_everywhere(url, token, header="Authorization", auth_key="token")

    async def control() -> None:
        status, _ = await call("GET", f"{url}/api/users/me", None, victim.bearer)
        assert status == 200
        # The platform's genuinely signed token for the victim's id is accepted.
        platform = {"Authorization": f"Bearer {provider.token(victim.id)}"}
        status, _ = await call("GET", f"{url}/api/users/me", None, platform)
        assert status == 200

    try:
        await assert_refused_without_trace(stack, row, matrix, attempt, control)
    finally:
        await provider.stop()


@pytest.mark.scenario(7)
async def test_forged_and_stale_session_tokens_refused_without_side_effects(
    stack: Stack, row: Row
) -> None:
    row.done = (
        "guest session tokens: random bytes, right format with an unknown id, one from a share"
        " link that expired, one of a revoked participant, one from a deactivated link, and"
        " garbage, over REST (X-Session-Token), the handshake and a late authenticate"
    )
    row.checked = "each refused with its code; no presence write in Redis; no document changed"
    for name, value in QUIET.items():
        stack.settings[f"PRESENCE_{name.upper()}"] = value
    stack.settings["PRESENCE_AUTH_FAILURES_PER_ADDRESS"] = "100000"
    workers = await stack.start_workers(1)
    url = workers[0].url
    owner = await register(url, "owner")
    cid = await conversation(url, owner, [], "guests")

    async def guest(expires_in: int | None, nickname: str) -> tuple[str, str, str]:
        body: dict[str, Any] = {} if expires_in is None else {"expiresInSeconds": expires_in}
        status, link = await call(
            "POST", f"{url}/api/conversations/{cid}/share-links", body, owner.bearer
        )
        assert status == 201, link
        status, joined = await call(
            "POST", f"{url}/api/anonymous/join/{link['data']['id']}", {"nickname": nickname}
        )
        assert status == 201, joined
        return joined["sessionToken"], joined["participant"]["id"], link["data"]["id"]

    expiring, _, _ = await guest(1, "expiring")
    revoked, revoked_id, _ = await guest(None, "revoked")
    unlinked, _, link_id = await guest(None, "unlinked")
    client = stack.mongo_client()
    db = client[stack.db_name]
    revoking = await db["anonymous_participants"].update_one(
        {"_id": revoked_id}, {"$set": {"isActive": False}}
    )
    unlinking = await db["share_links"].update_one({"_id": link_id}, {"$set": {"isActive": False}})
    assert revoking.modified_count == unlinking.modified_count == 1
    await client.close()
    await asyncio.sleep(1.2)  # the condition is time itself: the 1 s share link expires
    tokens = {
        "random bytes": secrets.token_bytes(32).hex(),
        "right format, unknown id": "pst_" + secrets.token_urlsafe(32),
        "expired share link": expiring,
        "revoked participant": revoked,
        "deactivated share link": unlinked,
        "garbage": "pst_" + "!" * 43,
        "as a number": 12345,
    }

    async def attempt(token: Any) -> tuple[int, Any, Any, Any]:
        return await refused_everywhere(
            url, token, header="X-Session-Token", auth_key="sessionToken"
        )

    valid, _, _ = await guest(None, "valid")

    async def control() -> None:
        status, _ = await call(
            "POST", f"{url}/api/presence/heartbeat", None, {"X-Session-Token": valid}
        )
        assert status == 200

    await assert_refused_without_trace(stack, row, tokens, attempt, control)


async def login(url: str, email: str, password: str, address: str) -> tuple[int, Any]:
    return await call(
        "POST",
        f"{url}/api/auth/login",
        {"email": email, "password": password},
        {"X-Forwarded-For": address},
    )


async def socket_attempt(url: str, token: str, address: str) -> Any:
    client = Listener("guess")
    try:
        await client.connect(url, auth={"token": token}, headers={"X-Forwarded-For": address})
        code: Any = "ACCEPTED"
    except socketio.exceptions.ConnectionError:
        code = (client.connect_error or {}).get("code")
    await client.close()
    return code


@pytest.mark.scenario(8)
async def test_rate_limits_hold_across_workers(stack: Stack, row: Row) -> None:
    row.done = (
        "2 workers, limits 6 failures per address and 4 per account per minute; wrong-password"
        " logins and forged socket tokens alternated between the workers, from one address and"
        " from many (X-Forwarded-For through the trusted proxy)"
    )
    row.checked = (
        "login: 429 with Retry-After once the address or the account is spent, even with the"
        " right password, while others log in; socket: connect_error rate_limited per address"
        " and per claimed account, and the real owner of the account still connects"
    )
    stack.settings["PRESENCE_AUTH_FAILURES_PER_ADDRESS"] = "6"
    stack.settings["PRESENCE_AUTH_FAILURES_PER_ACCOUNT"] = "4"
    urls = [w.url for w in await stack.start_workers(2)]
    victim, bystander = await register(urls[0], "victim"), await register(urls[0], "bystander")
    email = "victim@example.test"

    # Login, one address over both workers: 6 failures, then 429 even for the right password.
    codes: list[Any] = [
        (await login(urls[i % 2], f"nobody{i}@example.test", "wrong", "198.51.100.7"))[0]
        for i in range(6)
    ]
    assert codes == [401] * 6
    status, body = await login(urls[0], email, "password-1", "198.51.100.7")
    assert status == 429 and body["error"]["code"] == "rate_limited"
    status, _ = await login(urls[1], "bystander@example.test", "password-1", "198.51.100.8")
    assert status == 200
    row.measure("login per address: 6 failures over 2 workers, the 7th attempt 429")

    # Login, one account from many addresses: 4 failures, then the account is locked for the
    # window (429), other accounts from the same addresses log in.
    codes = [(await login(urls[i % 2], email, "wrong", f"203.0.113.{i}"))[0] for i in range(4)]
    assert codes == [401] * 4
    status, _ = await login(urls[1], email, "password-1", "203.0.113.99")
    assert status == 429
    status, _ = await login(urls[0], "bystander@example.test", "password-1", "203.0.113.99")
    assert status == 200
    row.measure("login per account: 4 failures from 4 addresses, the 5th from a 5th address 429")

    # Sockets, one address over both workers.
    codes = [await socket_attempt(urls[i % 2], f"guess-{i}", "192.0.2.1") for i in range(7)]
    assert codes == ["malformed"] * 6 + ["rate_limited"], codes
    assert await socket_attempt(urls[0], bystander.token, "192.0.2.2") == "ACCEPTED"
    row.measure("socket per address: 6 failures over 2 workers, the 7th rate_limited")

    # Sockets, forged tokens claiming the victim from many addresses: 4 failures, then
    # rate_limited, and the victim's own valid token still connects.
    now = int(time.time())
    forged = jwt.encode({"sub": victim.id, "iat": now, "exp": now + 60}, "x" * 40)
    codes = [await socket_attempt(urls[i % 2], forged, f"192.0.2.{10 + i}") for i in range(6)]
    assert codes == ["bad_signature"] * 4 + ["rate_limited"] * 2, codes
    assert await socket_attempt(urls[1], victim.token, "192.0.2.50") == "ACCEPTED"
    row.measure(
        "socket per account: forged tokens naming one user from 6 addresses, rate_limited after"
        " 4 failures;"
        " the user's own token still accepted"
    )


@pytest.mark.scenario(10)
async def test_presence_is_private_to_shared_conversations(stack: Stack, row: Row) -> None:
    row.done = (
        "alice and bob share a conversation, carol shares none with them; bob goes invisible;"
        " carol asks for their presence through every endpoint and event"
    )
    row.checked = (
        "carol learns nothing of alice or bob (left out, 404/403, no events); alice sees bob"
        " offline and never his manual status, through REST, room presence, snapshot,"
        " presence:state and user:status; bob sees his own invisible; the text bob chose while"
        " invisible is shown to nobody but him; bob's hidden last seen is null for alice, and"
        " once alice hides hers she gets bob's only approximately, in REST and in user:status"
    )
    urls = [w.url for w in await stack.start_workers(2)]
    alice, bob, carol = [await register(urls[0], n) for n in ("alice", "bob", "carol")]
    cid = await conversation(urls[0], alice, [bob], "private")
    carol_cid = await conversation(urls[0], carol, [], "alone")

    bob_socket = Listener("bob")
    await bob_socket.connect(urls[1], auth={"token": bob.token})
    await bob_socket.wait_for("presence:snapshot")
    carol_socket = Listener("carol")
    await carol_socket.connect(urls[0], auth={"token": carol.token})
    snapshot = (await carol_socket.wait_for("presence:snapshot"))[0]
    assert [u["userId"] for u in snapshot["users"]] in ([], [carol.id])
    alice_socket = Listener("alice")
    await alice_socket.connect(urls[0], auth={"token": alice.token})
    await alice_socket.wait_for("presence:snapshot")

    # Carol: REST presence by id, the conversation's presence, joining its room.
    status, body = await call(
        "GET", f"{urls[0]}/api/users/presence?ids={alice.id},{bob.id}", None, carol.bearer
    )
    assert status == 200 and body["data"]["users"] == [], body
    status, _ = await call("GET", f"{urls[1]}/api/conversations/{cid}/presence", None, carol.bearer)
    assert status in (403, 404)
    await carol_socket.client.emit("conversation:join", {"conversationId": cid})
    error = (await carol_socket.wait_for("error"))[0]
    assert error["code"] in ("not_found", "not_member") and not carol_socket.events(
        "presence:state"
    )
    status, _ = await call(
        "POST", f"{urls[0]}/api/conversations/{cid}/share-links", {}, carol.bearer
    )
    assert status in (403, 404)

    # Bob goes invisible: others see offline, with nothing that gives him away.
    status, own = await call(
        "PUT", f"{urls[1]}/api/users/me/status", {"status": "invisible"}, bob.bearer
    )
    assert status == 200 and own["data"]["manualStatus"] == "invisible"
    heard = await alice_socket.wait_status(bob.id, 1)
    assert heard[-1]["isOnline"] is False and heard[-1]["status"] == "offline"
    assert "manualStatus" not in heard[-1]
    await bob_socket.client.emit("heartbeat", {})
    status, body = await call(
        "GET", f"{urls[0]}/api/users/presence?ids={bob.id}", None, alice.bearer
    )
    seen = body["data"]["users"][0]
    assert (seen["isOnline"], seen["status"]) == (False, "offline") and "manualStatus" not in seen
    status, body = await call(
        "GET", f"{urls[1]}/api/conversations/{cid}/presence", None, alice.bearer
    )
    assert status == 200
    bob_in_room = next(u for u in body["data"]["users"] if u["userId"] == bob.id)
    assert bob_in_room["isOnline"] is False and "manualStatus" not in bob_in_room
    await alice_socket.client.emit("conversation:join", {"conversationId": cid})
    state = (await alice_socket.wait_for("presence:state"))[0]
    bob_state = next(u for u in state["users"] if u["userId"] == bob.id)
    assert bob_state["isOnline"] is False and "manualStatus" not in bob_state
    status, me = await call("GET", f"{urls[1]}/api/users/me", None, bob.bearer)
    assert status == 200 and "invisible" in json.dumps(me), me  # bob sees his own choice

    # A fresh connection of alice's: bob is offline in her snapshot too.
    again = Listener("alice-again")
    await again.connect(urls[1], auth={"token": alice.token})
    snap = (await again.wait_for("presence:snapshot"))[0]
    bob_snap = next(u for u in snap["users"] if u["userId"] == bob.id)
    assert bob_snap["isOnline"] is False and "manualStatus" not in bob_snap

    # A text chosen while invisible: nobody but bob sees it.
    status, own = await call(
        "PUT",
        f"{urls[1]}/api/users/me/status",
        {"status": "invisible", "text": "hiding"},
        bob.bearer,
    )
    assert status == 200 and own["data"]["statusText"] == "hiding"
    for url in urls:
        status, body = await call(
            "GET", f"{url}/api/users/presence?ids={bob.id}", None, alice.bearer
        )
        assert (body["data"]["users"][0]["statusText"], "hiding" in json.dumps(body)) == (
            None,
            False,
        )

    # Last-seen privacy: bob hides his; then alice hides hers and bob shares his again.
    status, _ = await call(
        "PUT", f"{urls[0]}/api/users/me/privacy", {"lastSeen": "hidden"}, bob.bearer
    )
    assert status == 200
    status, body = await call(
        "GET", f"{urls[1]}/api/users/presence?ids={bob.id}", None, alice.bearer
    )
    seen = body["data"]["users"][0]
    assert (seen["lastSeen"], seen["lastSeenApprox"], seen["lastActiveAt"]) == (None, None, None)
    status, body = await call("GET", f"{urls[0]}/api/users/me/privacy", None, carol.bearer)
    assert status == 200 and body["data"] == {"lastSeen": "exact"}  # her own, nobody else's
    status, refused = await call(
        "PUT", f"{urls[0]}/api/users/me/privacy", {"lastSeen": "everyone"}, carol.bearer
    )
    assert status == 400 and refused["error"]["code"] == "invalid_privacy"
    await call("PUT", f"{urls[0]}/api/users/me/privacy", {"lastSeen": "exact"}, bob.bearer)
    await call("PUT", f"{urls[1]}/api/users/me/privacy", {"lastSeen": "hidden"}, alice.bearer)
    status, _ = await call(
        "PUT", f"{urls[1]}/api/users/me/status", {"status": "online"}, bob.bearer
    )
    assert status == 200
    await until(
        lambda: alice_socket.statuses_of(bob.id)[-1]["isOnline"] is True,
        timeout_s=10,
        what="bob visible again",
    )
    before = len(alice_socket.statuses_of(bob.id))
    await bob_socket.close()
    gone = await alice_socket.wait_status(bob.id, before + 1, timeout_s=20)
    offline = gone[before]
    assert offline["isOnline"] is False
    assert (offline["lastSeen"], offline["lastActiveAt"], offline["lastSeenApprox"]) == (
        None,
        None,
        "recently",
    )
    status, body = await call(
        "GET", f"{urls[0]}/api/users/presence?ids={bob.id}", None, alice.bearer
    )
    seen = body["data"]["users"][0]
    assert (seen["lastSeen"], seen["lastSeenApprox"]) == (None, "recently")

    assert carol_socket.events("user:status") == []
    assert carol_cid
    row.measure(
        "carol: 0 records over REST, 403/404 on the conversation and its links, error on"
        " conversation:join, 0 user:status events; invisible bob offline in REST, room"
        " presence, presence:state, snapshot and user:status, his text shown to nobody; his"
        " hidden last seen null for alice, and only 'recently' once alice hid hers (REST and"
        " user:status)"
    )
