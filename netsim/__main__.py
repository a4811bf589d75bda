"""``python -m netsim``: the ``netsim`` command."""

import sys

from netsim.cli import main

sys.exit(main())
