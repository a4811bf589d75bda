"""A short run of ``tests/fuzz.py`` (the full one is a benchmark: 1,000,000 inputs per decoder):
every decoder of network bytes raises only its typed error."""

import pytest

from tests import fuzz


@pytest.mark.parametrize("target", fuzz.targets(), ids=lambda t: t.name)
def test_decoder_raises_only_its_typed_error(target):
    result = fuzz.run(target, 5000, seed=7)
    assert not result.findings, result.examples
    assert result.rejected > 0 and result.accepted > 0  # the mutations reach both outcomes
