"""`python -m linr` runs the `linr` command."""

import sys

from linr.cli.main import main

sys.exit(main())
