"""The exit codes of `mmrag`: every sub-command module returns one, and tests compare against them."""

from __future__ import annotations

EXIT_OK = 0
EXIT_ERROR = 1  # a typed error of the library (bad collection, missing weights, ...), printed as one line
EXIT_USAGE = 2  # bad arguments, as argparse exits
EXIT_SKIPPED = 3  # indexing finished but skipped some files (`mmrag info --errors` lists them)
