"""`python -m agents ...` is the `agent` command."""

import sys

from agents.cli import main

sys.exit(main())
