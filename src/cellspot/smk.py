"""Glue for the thin scripts under ``workflow/scripts``: logging to the rule's log and errors.

A script does ``run_step(snakemake, main)``: the rule log receives everything the package logs
(with timestamps, so long steps show progress), warnings included; a known input problem ends the
job with its one-line message, anything else with a traceback.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Callable

from .errors import CellspotError
from .resources import without_resources  # noqa: F401 - for the rules

EXPECTED_ERRORS = (CellspotError, FileNotFoundError)

# The rules' scripts, beside the package in a checkout (the workflow runs from one).
SCRIPTS_DIR = Path(__file__).resolve().parents[2] / "workflow" / "scripts"
# Re-run triggers for code: a rule's ``code`` param fingerprints its script's imports from the
# workflow's packages, directly or not (cellspot.provenance.imported_modules). Explicitly left
# out, because they cannot change a result: this adapter glue (logging, one-line errors) and the
# error classes; for training also the OME-Zarr writer (hours of GPU time are not re-spent on
# a metadata fix).
CODE_IGNORE = ("cellspot.smk", "cellspot.errors")
TRAIN_CODE_IGNORE = CODE_IGNORE + ("cellspot.omezarr",)


def rule_code(*scripts: str, ignore: tuple[str, ...] = CODE_IGNORE) -> str:
    """The ``code`` param of the rules that run ``workflow/scripts/<script>``."""
    from .provenance import code_fingerprint

    return code_fingerprint(*(SCRIPTS_DIR / s for s in scripts), ignore=ignore)


def stop(message: str) -> None:
    """End planning with a one-line error and no traceback (a user error, in a Snakefile)."""
    from snakemake.logging import logger

    logger.error(message)
    sys.exit(1)


def scaled_mem(mb: int):
    """A rule's ``mem_mb`` that grows with the attempt: a job killed for memory retries with
    more."""
    return lambda wildcards, attempt: int(mb) * attempt


def setup_logging(logfile: str | None, level: int = logging.INFO) -> None:
    """Send the root logger (and Python warnings) to ``logfile`` and stderr."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if logfile:
        os.makedirs(os.path.dirname(logfile) or ".", exist_ok=True)
        handlers.append(logging.FileHandler(logfile, mode="w"))
    logging.basicConfig(level=level, handlers=handlers, force=True,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.captureWarnings(True)
    warnings.simplefilter("default")


def warn_memory(mem_mb, log: logging.Logger) -> None:
    """Warn when a job asks for more memory than this machine has: nothing enforces ``mem_mb``
    outside a cluster, so a local job would swap or be killed by the kernel instead."""
    try:
        total_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20
    except (ValueError, OSError, AttributeError):
        return
    if isinstance(mem_mb, (int, float)) and mem_mb > total_mb:
        log.warning("this job asks for mem_mb=%d but this machine has %d MB: it may be killed "
                    "for memory (lower the stage's mem_mb and its block size, or run on the "
                    "cluster)", mem_mb, total_mb)


def peak_memory_mb() -> float:
    """Peak resident memory of this process and its finished children (MB; Linux units)."""
    import resource

    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return (own + children) / 1024


def warn_peak_memory(mem_mb, log: logging.Logger, peak_mb: float | None = None) -> None:
    """Warn when a job used more memory than it asked for: locally it finished, but on SLURM
    (which enforces ``mem_mb``) the same job would be killed."""
    peak_mb = peak_memory_mb() if peak_mb is None else peak_mb
    if isinstance(mem_mb, (int, float)) and peak_mb > mem_mb:
        log.warning("this job peaked at %d MB, above its mem_mb=%d: on a cluster it would be "
                    "killed for memory; raise the stage's mem_mb", peak_mb, mem_mb)


def run_step(snakemake, main: Callable) -> None:
    """Run ``main(snakemake)`` with logging set up; exit non-zero with a clear message on error."""
    setup_logging(snakemake.log[0] if len(snakemake.log) else None)
    log = logging.getLogger(f"cellspot.rule.{snakemake.rule}")
    log.info("rule %s, wildcards %s, threads %s", snakemake.rule, dict(snakemake.wildcards),
             snakemake.threads)
    warn_memory(getattr(getattr(snakemake, "resources", None), "mem_mb", None), log)
    try:
        main(snakemake)
    except EXPECTED_ERRORS as exc:
        log.error("%s", exc)
        sys.exit(f"cellspot {snakemake.rule}: {exc}")
    except MemoryError:
        # Locally nothing enforces mem_mb; on SLURM the kill comes without a Python error.
        mem = getattr(snakemake.resources, "mem_mb", None)
        msg = (f"out of memory (the job asked for mem_mb={mem}): raise the `mem_mb` of this "
               f"stage's section in the config (a retried job gets mem_mb x attempt)")
        log.error("%s", msg)
        sys.exit(f"cellspot {snakemake.rule}: {msg}")
    except Exception:
        log.exception("rule %s failed", snakemake.rule)
        raise
    warn_peak_memory(getattr(getattr(snakemake, "resources", None), "mem_mb", None), log)
    log.info("rule %s done", snakemake.rule)
