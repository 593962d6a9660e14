"""The fault and abuse suite (``make test-fault``): each test records its row for
``docs/RELIABILITY.md`` through the ``row`` fixture."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Generator, Iterator
from pathlib import Path

import pytest

from devstack.database import DatabaseHost
from tests.fault.report import Row, save
from tests.fault.stack import Stack, start_stack
from tests.fault.truth import RestLoad, Tab
from tests.support.sio import Listener

_ROWS: list[Row] = []
_STARTED = time.monotonic()
_ROW_KEY = pytest.StashKey[Row]()


@pytest.fixture
def row(request: pytest.FixtureRequest) -> Row:
    marker = request.node.get_closest_marker("scenario")
    assert marker is not None, "every fault test names its scenario: @pytest.mark.scenario(n)"
    found = Row(scenario=int(marker.args[0]), test=request.node.nodeid)
    request.node.stash[_ROW_KEY] = found
    _ROWS.append(found)
    return found


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    found = item.stash.get(_ROW_KEY, None)
    if found is not None and (report.when == "call" or report.failed):
        if report.when == "call":
            found.seconds = report.duration
        if found.outcome in ("not run", "passed"):
            found.outcome = report.outcome
    return report


def pytest_sessionfinish(session: pytest.Session) -> None:
    if _ROWS:
        written = save(_ROWS, time.monotonic() - _STARTED)
        if written is not None:
            print(f"\nfault suite: {written} regenerated")


@pytest.fixture
def stack(
    tmp_path: Path, database_host: DatabaseHost, request: pytest.FixtureRequest
) -> Iterator[Stack]:
    """Redis (standalone, or the mode the test names: ``indirect`` ``stack`` parameter) and the
    database server of this test only, plus the workers it starts."""
    started = start_stack(tmp_path, database_host, str(getattr(request, "param", "standalone")))
    try:
        yield started
    finally:
        started.close()


@pytest.fixture(autouse=True)
async def close_socket_clients() -> AsyncIterator[None]:
    """Stop the load and close the clients a test started, also when it failed halfway."""
    yield
    while Tab.running:
        await Tab.running.pop().stop()
    while RestLoad.running:
        await RestLoad.running.pop().stop()
    await Listener.close_all()
