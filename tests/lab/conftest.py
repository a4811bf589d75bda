"""Lab tests need root; each one must leave no process or namespace of ours behind."""

import pytest

from netsim.control.lab import leftovers


@pytest.fixture(autouse=True)
def no_leftovers():
    yield
    left = leftovers()
    assert not left, f"lab leftovers: {left}"
