"""Shared test setup: markers for root-only tests and a leak check for asyncio tasks."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass

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


@dataclass
class Broker:
    daemon: object
    port: int

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"


@pytest.fixture
def mosquitto_factory(tmp_path):
    """Start real mosquitto brokers on 127.0.0.1 (free ports); all stopped by PID afterwards."""
    from netsim.control.daemons import Daemon, mosquitto
    from tests.daemons import free_port
    from warpgate.proto.envelope import MAX_SIZE

    started = []

    def start(port: int | None = None, *, size_limit: int | None = MAX_SIZE) -> Broker:
        port = port or free_port()
        daemon = Daemon(mosquitto("127.0.0.1", port, size_limit=size_limit), tmp_path / "mosquitto")
        daemon.start()
        started.append(daemon)
        return Broker(daemon, port)

    yield start
    for daemon in started:
        daemon.stop()
    assert not any(d.running for d in started)


@pytest.fixture
def clean_registry():
    """Restore the plugin registry after a test that registers plugins of its own."""
    from warpgate import plugins as registry

    registry.available()  # built-ins and entry points first, so the snapshot holds them
    before = dict(registry._registry)
    yield registry
    registry._registry.clear()
    registry._registry.update(before)
