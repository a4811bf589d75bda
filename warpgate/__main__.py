"""``python -m warpgate``: the ``warpgate`` command."""

import sys

from warpgate.cli import main

sys.exit(main())
