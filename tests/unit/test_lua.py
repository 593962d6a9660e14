"""Every Lua script is loaded at start-up: a request never pays a NOSCRIPT retry."""

from __future__ import annotations

from presence import lua as keys


def test_every_script_is_in_the_start_up_list() -> None:
    scripts = {
        name
        for name, value in vars(keys).items()
        if name.isupper() and not name.startswith("_") and isinstance(value, str)
    }
    assert scripts, "no script found"
    assert {name for name in scripts if getattr(keys, name) not in keys.SCRIPTS} == set()
