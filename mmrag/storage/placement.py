"""Where a collection space's index lives, in RAM or on disk, and the RAM budget that decides it.

A space is served from an in-RAM VectorIndex unless the user forces the on-disk index (factory
override "ondisk", e.g. `mmrag index --factory ondisk`), or the in-RAM index would not fit the RAM
budget (indexes.factory.needs_disk). The budget comes from, first to last: `mmrag index
--ram-budget` (also recorded in the manifest), the MMRAG_RAM_BUDGET environment variable, the
budget recorded by an earlier run, and the default.
"""

from __future__ import annotations

import os
import re

from indexes.factory import DEFAULT_RAM_BUDGET_BYTES, needs_disk
from mmrag.errors import ConfigError

ENV_VAR = "MMRAG_RAM_BUDGET"
ONDISK = "ondisk"  # the factory override that forces the on-disk index
AUTO = "auto"  # the factory override that clears an earlier one
RAM, DISK = "ram", "ondisk"  # the kinds recorded in the manifest
# never more than a quarter of the machine: the encoders, the page cache (which serves the on-disk
# lists) and the other spaces' indexes need the rest
DEFAULT_RAM_SHARE = 0.25

_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([kmgt]?)(?:i?b)?\s*$", re.IGNORECASE)


def parse_bytes(text: str) -> int:
    """'600M', '2G', '1.5GiB', '512kb' or a plain byte count; units are powers of 1024."""
    mo = _SIZE_RE.match(str(text))
    value = int(float(mo.group(1)) * _UNITS[mo.group(2).lower()]) if mo else 0
    if value <= 0:
        raise ConfigError(f"RAM budget {text!r} is not a positive size; examples: 600M, 2G, 1.5GiB, 1048576")
    return value


def physical_ram() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def default_ram_budget() -> int:
    """The in-RAM index target the factory choice was tuned for, capped at a share of physical RAM."""
    ram = physical_ram()
    return min(DEFAULT_RAM_BUDGET_BYTES, int(ram * DEFAULT_RAM_SHARE)) if ram else DEFAULT_RAM_BUDGET_BYTES


def resolve_ram_budget(flag: int | None = None, recorded: int | None = None) -> int:
    """Bytes one space's index may hold in RAM: the flag, else $MMRAG_RAM_BUDGET, else the recorded
    budget, else the default."""
    if flag is not None:
        return int(flag)
    env = os.environ.get(ENV_VAR, "").strip()
    if env:
        try:
            return parse_bytes(env)
        except ConfigError as e:
            raise ConfigError(f"{ENV_VAR}: {e}") from None
    if recorded:
        return int(recorded)
    return default_ram_budget()


def choose_kind(override: str | None, n: int, dim: int, ram_budget: int) -> str:
    """RAM or DISK for a space of n vectors: a forced choice first, then the budget rule.

    Any other factory override means the user picked an in-RAM index: it is kept in RAM.
    """
    if override == ONDISK:
        return DISK
    if override:
        return RAM
    return DISK if n > 0 and needs_disk(n, dim, ram_budget) else RAM
