"""`python -m plyrd` is the same as the `plyrd` command."""

import sys

from .cli import main

sys.exit(main())
