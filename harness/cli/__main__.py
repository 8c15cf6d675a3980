"""``python -m harness.cli``: the ``snnbench`` command line."""

import sys

from . import main

sys.exit(main())
