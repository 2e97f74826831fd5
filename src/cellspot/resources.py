"""Job resources in the configuration: the settings that say how a job runs, not what it computes.

Every stage's section may hold them (``mem_mb``, ``runtime``, ``threads``, ``gpu``); stages ignore
them, and rules leave them out of their ``params`` so that changing one re-runs nothing (raising
``mem_mb`` is the usual answer to an out-of-memory kill).
"""

from __future__ import annotations

from pydantic import Field

RESOURCE_KEYS = frozenset({"mem_mb", "runtime", "threads", "gpu"})


def without_resources(settings):
    """``settings`` (nested dicts) without :data:`RESOURCE_KEYS` at any depth."""
    if not isinstance(settings, dict):
        return settings
    return {k: without_resources(v) for k, v in settings.items() if k not in RESOURCE_KEYS}


# Fields of the config models (cellspot.config): one wording and one bound for each resource.


def mem_field(default: int, what: str):
    return Field(default, ge=100, description=f"memory (MB) requested for {what}")


def runtime_field(default: int, what: str):
    return Field(default, ge=1, description=f"wall-time limit (minutes) of {what}")


def threads_field(default: int, what: str):
    return Field(default, ge=1, description=f"CPU threads of {what}")


def gpu_field(default: int, what: str):
    return Field(default, ge=0, description=f"GPUs requested from SLURM for {what} (0 runs "
                 "on CPU)")
