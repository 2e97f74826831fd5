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
from typing import Callable

from .errors import CellspotError

EXPECTED_ERRORS = (CellspotError, FileNotFoundError)


def scaled_mem(mb: int):
    """A rule's ``mem_mb`` that grows with the attempt: a job killed for memory retries with more."""
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


def run_step(snakemake, main: Callable) -> None:
    """Run ``main(snakemake)`` with logging set up; exit non-zero with a clear message on error."""
    setup_logging(snakemake.log[0] if len(snakemake.log) else None)
    log = logging.getLogger(f"cellspot.rule.{snakemake.rule}")
    log.info("rule %s, wildcards %s, threads %s", snakemake.rule, dict(snakemake.wildcards),
             snakemake.threads)
    try:
        main(snakemake)
    except EXPECTED_ERRORS as exc:
        log.error("%s", exc)
        sys.exit(f"cellspot {snakemake.rule}: {exc}")
    except Exception:
        log.exception("rule %s failed", snakemake.rule)
        raise
    log.info("rule %s done", snakemake.rule)
