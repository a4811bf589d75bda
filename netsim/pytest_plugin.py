"""netsim's pytest plugin (entry point ``pytest11``, loaded wherever warpgate is installed): labs and
scenarios inside a test suite, for CI jobs that catch traversal regressions.

    import pytest
    from netsim.testing import assert_scenario

    @pytest.mark.scenario("quick", trials=1)          # a shipped name, or a TOML path
    def test_the_quick_matrix(scenario_cells):
        assert (scenario_cells["errors"] == 0).all()   # every cell already agreed with theory

    def test_a_full_cone_reaches_the_internet(lab):
        net = lab("two-sites:full-cone,open")           # started now, torn down after the test
        assert " 0% packet loss" in net.host("a").cmd("ping -c1 -W2 203.0.113.10")

    def test_my_own_scenario(tmp_path):
        assert_scenario("my-scenario.toml", tmp_path / "run")

Both fixtures need root (they skip otherwise) and the ``lab`` extra; each checks after the test
that no namespace, process or link of the lab is left behind. Importing this module is cheap: it
loads nothing of the lab until a fixture is used.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "scenario(name, trials=None): what scenario_cells runs (a shipped name or a TOML path)",
    )


def _need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("a lab needs root (network namespaces)")


@pytest.fixture
def lab() -> Iterator[Callable[..., Any]]:
    """A factory: ``lab(spec_or_topology, **Lab options)`` starts a lab (a spec as ``netsim shell``
    takes, e.g. ``two-sites:full-cone,symmetric``) and returns it; every lab it made is torn down
    after the test, and nothing may be left behind."""
    _need_root()
    from netsim.cli import parse_topology
    from netsim.control.lab import Lab, leftovers

    made: list[Lab] = []

    def build(spec: Any, **options: Any) -> Lab:
        topology = parse_topology(spec) if isinstance(spec, str) else spec
        started = Lab(topology, **options).__enter__()
        made.append(started)
        return started

    try:
        yield build
    finally:
        for started in reversed(made):
            started.__exit__(None, None, None)
    left = leftovers()
    assert not left, f"lab leftovers: {left}"


@pytest.fixture
def scenario_cells(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """Runs the test's ``@pytest.mark.scenario`` into a temporary directory, fails on every cell
    that disagrees with its expected outcome (``assert_scenario``), and returns the cell table."""
    marker = request.node.get_closest_marker("scenario")
    if marker is None or not marker.args:
        raise pytest.UsageError("scenario_cells needs @pytest.mark.scenario(NAME_OR_PATH)")
    _need_root()
    from netsim.control.lab import leftovers
    from netsim.testing import assert_scenario

    cells = assert_scenario(marker.args[0], tmp_path / "run", trials=marker.kwargs.get("trials"))
    left = leftovers()
    assert not left, f"lab leftovers: {left}"
    return cells
