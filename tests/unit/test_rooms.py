"""The pure parts of large conversations (presence.rooms): page bounds and cursors."""

from __future__ import annotations

import pytest

from presence.domain import InvalidInput
from presence.rooms import DEFAULT_PAGE, MAX_PAGE, decode_cursor, encode_cursor, page_limit


def test_a_page_holds_one_to_two_hundred_members() -> None:
    assert page_limit(None) == DEFAULT_PAGE
    assert page_limit("1") == 1
    assert page_limit(str(MAX_PAGE)) == MAX_PAGE
    for bad in ("0", "201", "-1", "ten", "", "1.5"):
        with pytest.raises(InvalidInput) as refused:
            page_limit(bad)
        assert refused.value.code == "invalid_limit"


def test_a_cursor_says_where_the_last_page_ended() -> None:
    assert decode_cursor(None) == ("on", "")
    for phase in ("on", "off"):
        cursor = encode_cursor(phase, "user:a|b")
        assert "=" not in cursor and decode_cursor(cursor) == (phase, "user:a|b")


@pytest.mark.parametrize("bad", ["x", "!!!", encode_cursor("on", "")[:-1], "b2s", "bWlk"])
def test_a_cursor_presence_did_not_write_is_refused(bad: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        decode_cursor(bad)
    assert refused.value.code == "invalid_cursor"
