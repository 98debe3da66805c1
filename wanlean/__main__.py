"""`python -m wanlean ...` runs the `wanlean` command."""

import sys

from .cli import main

sys.exit(main())
