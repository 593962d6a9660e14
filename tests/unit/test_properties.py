"""Properties of the validators and the pure presence policy, on arbitrary input (hypothesis).

Each validator refuses only with its own refusal type (never a crash), tokens fail only with
TokenError, the client address is never taken from past an untrusted hop, the online rule and
the status shown follow SPEC §3 (invisible never shows), lastSeen never moves back, and the
per-socket event budget is never exceeded, and every moment is formatted as ISO-8601 UTC with
milliseconds.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import unicodedata
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from functools import partial
from typing import Any

import hypothesis
import hypothesis.strategies as st

from presence.addresses import client_address
from presence.api import openapi, parsing
from presence.auth.tokens import JwtCodec, TokenError, claimed_subject
from presence.contract.events import INBOUND
from presence.domain import InvalidInput, ManualStatus, Status, has_control_characters, iso
from presence.policy import LiveState, is_online, last_seen, own_status, visible_status
from presence.realtime import payloads
from presence.realtime.limits import TokenBucket
from tests.conftest import JWT_SECRET
from tests.support.fakes import FakeClock
from tests.support.strategies import JSON

ANY_ARGS = st.lists(JSON, max_size=3).map(tuple)
NETWORKS = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("10.0.0.0/8"))
FAST = hypothesis.settings(max_examples=300, deadline=None, database=None)

CODEC = JwtCodec(JWT_SECRET, 3600, FakeClock())


@FAST
@hypothesis.given(args=ANY_ARGS)
def test_socket_payload_validators_refuse_only_with_their_own_error(args: tuple[Any, ...]) -> None:
    validators: list[Callable[[tuple[Any, ...]], object]] = [payloads.authenticate]
    validators += [partial(payloads.event_payload, model) for model in INBOUND.values()]
    for validate in validators:
        refusal: payloads.InvalidPayload | None = None
        try:
            validate(args)
        except payloads.InvalidPayload as exc:
            refusal = exc
        assert refusal is None or (refusal.code and refusal.message)
    try:
        found = payloads.credentials_from(args[0] if args else None)
    except payloads.InvalidPayload:
        return
    if found is not None:
        assert (found.token is None) != (found.session_token is None)


assert openapi.PATHS  # imports every handler, so each has declared its body
REQUEST_BODIES = [declared.model for declared in parsing.DECLARED.values()]
FIELD_NAMES = sorted(
    {field.alias or name for model in REQUEST_BODIES for name, field in model.model_fields.items()}
)


@FAST
@hypothesis.given(
    body=st.dictionaries(st.sampled_from(FIELD_NAMES), JSON).map(json.dumps).map(str.encode)
    | st.binary(max_size=64)
)
def test_http_bodies_are_refused_only_with_their_codes(body: bytes) -> None:
    assert len(REQUEST_BODIES) >= 7, "every handler that reads a body declares it"
    for model in REQUEST_BODIES:
        refusal: InvalidInput | None = None
        try:
            parsing.decode(model, body)
        except InvalidInput as exc:
            refusal = exc
        codes = {"invalid_input", "invalid_json", *model.field_codes.values()}
        assert refusal is None or (refusal.code in codes and refusal.message)


def test_control_characters_are_exactly_unicode_category_cc() -> None:
    """The pattern every schema publishes is the rule the code applies."""
    for point in range(0x110000):
        char = chr(point)
        assert has_control_characters(char) == (unicodedata.category(char) == "Cc"), hex(point)


@FAST
@hypothesis.given(token=st.text(max_size=300) | st.binary(max_size=300).map(repr))
def test_any_token_is_refused_with_token_error_only(token: str) -> None:
    with contextlib.suppress(TokenError):
        CODEC.verify(token)
    claimed = claimed_subject(token)
    assert claimed is None or (isinstance(claimed, str) and len(claimed) <= 128)


HOP = st.ip_addresses().map(str) | st.text(max_size=20)


@FAST
@hypothesis.given(peer=HOP, forwarded=st.none() | st.lists(HOP, max_size=5).map(", ".join))
def test_the_client_address_never_comes_from_past_an_untrusted_hop(
    peer: str, forwarded: str | None
) -> None:
    found = client_address(peer, forwarded, NETWORKS)
    hops = [h.strip() for h in (forwarded or "").split(",")]
    assert found in (peer.strip() or "unknown", *hops)
    if found != (peer.strip() or "unknown"):
        # A forwarded hop is believed only from a trusted peer, and it is an address.
        assert any(ipaddress.ip_address(peer.strip()) in n for n in NETWORKS)
        ipaddress.ip_address(found)


TIMES = st.floats(min_value=0, max_value=1e6, allow_nan=False)


@FAST
@hypothesis.given(
    marked=st.booleans(),
    last=st.none() | TIMES,
    connections=st.integers(0, 3),
    grace=st.booleans(),
    now=TIMES,
    manual=st.sampled_from(list(ManualStatus)),
    stored=st.none() | TIMES,
)
def test_presence_policy_follows_the_rule_and_never_shows_invisible(
    marked: bool,
    last: float | None,
    connections: int,
    grace: bool,
    now: float,
    manual: ManualStatus,
    stored: float | None,
) -> None:
    online = is_online(LiveState(marked, last, connections, grace), now, 300)
    expected = marked and (connections > 0 or grace or (last is not None and last >= now - 300))
    assert online == expected
    shown = visible_status(online, manual)
    assert shown is not Status.ONLINE or manual is ManualStatus.ONLINE
    assert (shown is Status.OFFLINE) == (not online or manual is ManualStatus.INVISIBLE)
    assert own_status(online, manual) is not Status.OFFLINE or not online
    stored_at = None if stored is None else datetime.fromtimestamp(stored, UTC)
    seen = last_seen(online, stored_at, last)
    assert stored_at is None or (seen is not None and seen >= stored_at)


@FAST
@hypothesis.given(gaps=st.lists(st.floats(min_value=0, max_value=0.5), max_size=300))
def test_the_event_budget_is_never_exceeded(gaps: list[float]) -> None:
    bucket, now, allowed = TokenBucket(), 1000.0, 0
    started = now
    for gap in gaps:
        now += gap
        allowed += bucket.allow(now)
    assert allowed <= bucket.capacity + (now - started) * bucket.rate + 1e-6


@FAST
@hypothesis.given(
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)),
    st.sampled_from(
        [None, UTC, timezone(timedelta(hours=5, minutes=30)), timezone(-timedelta(hours=8))]
    ),
)
def test_iso_is_utc_with_milliseconds_whatever_the_zone(moment: datetime, zone: Any) -> None:
    """The fast formatter agrees with ``isoformat`` (naive moments are UTC)."""
    aware = moment.replace(tzinfo=UTC) if zone is None else moment.replace(tzinfo=zone)
    expected = aware.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    assert iso(moment if zone is None else aware) == expected
    assert iso(None) is None
