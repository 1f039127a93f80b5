"""Shared fixtures: a whole fleetloop stack of real processes under the test's tmp_path."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetloop.stack import Stack


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


@pytest.fixture
def stack(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stack]:
    """Keys made, nothing started: each test starts what it needs through the CLI."""
    home = tmp_path / "home"
    st = Stack(home=home, admin_token="test-admin-token-" + tmp_path.name)
    try:
        yield st
    finally:
        st.stop()
        rep = getattr(request.node, "rep_call", None)
        if rep is not None and rep.failed:
            print("\n===== logs of the processes this test started =====")
            print(st.supervisor.logs())
