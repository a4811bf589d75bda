"""Shared test setup: markers for root-only tests and a leak check for asyncio tasks."""

from __future__ import annotations

import asyncio
import os

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason="needs root (network namespaces); CI runs as root")
    for item in items:
        if "root" in item.keywords or "lab" in item.keywords:
            item.add_marker(skip)


def assert_no_tasks() -> None:
    """Fail if anything but the running test is still scheduled (pion's CheckRoutines)."""
    current = asyncio.current_task()
    left = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
    assert not left, f"tasks left pending: {left}"
