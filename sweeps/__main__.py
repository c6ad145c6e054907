"""`python -m sweeps ...` is the `sweeps` command."""

import sys

from sweeps.cli import main

sys.exit(main())
