"""`python -m mmrag.cli` runs the same command as `mmrag`."""

from __future__ import annotations

import sys

from . import main

sys.exit(main())
