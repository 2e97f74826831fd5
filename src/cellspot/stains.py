"""The stains a movie may hold, by role, and which of them a configuration says are absent.

The top-level ``channels:`` config maps each role to a channel name or index, or to ``null``
when the movie has no such stain (:class:`cellspot.config.Channels`).
"""

from __future__ import annotations

from typing import Mapping

ROLES = ("nucleus", "cytoplasm", "rna")


def absent_stains(channels: Mapping | None) -> list[str]:
    """The roles that ``channels`` (role -> name, index or None) sets to None, in role order."""
    channels = channels or {}
    return [r for r in ROLES if r in channels and channels[r] is None]
