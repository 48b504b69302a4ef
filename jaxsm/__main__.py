"""``python -m jaxsm``: the ``jaxsm`` command line (jaxsm/cli.py)."""

import sys

from jaxsm.cli import main

sys.exit(main())
