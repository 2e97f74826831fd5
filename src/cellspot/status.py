"""Where each batch stands: which stages are done, which failed and why (for nightly runs)."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from .batches import BATCH_NAME
from .layout import RESULTS, in_batch

# The final output of each stage (a batch file of cellspot.layout), in DAG order.
STAGE_OUTPUTS = (
    ("ingest", ("raw", {})),
    ("preprocess", ("preprocessed", {})),
    ("segment", ("segment_block", {"model": "*", "start": "*", "stop": "*"})),
    ("merge", ("table", {"name": "cells"})),
    ("track", ("table", {"name": "cell_tracks"})),
    ("report", ("report_html", {})),
)
_ERROR = re.compile(r"\b(ERROR|Error|Traceback|Exception)\b")


def last_error(log: Path) -> str:
    """The last line of a log that reports an error ('' if none)."""
    lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if _ERROR.search(ln)]
    return lines[-1][:300] if lines else ""


def batch_status(results: Path, batch: str, rejected: str = "") -> dict:
    """Stages done, the first missing stage and the error: why the batch was rejected at
    planning (``rejected``), or what a rule log reports."""
    root = results / batch
    # a rejected name may not be a path-safe one: then it has no results to look at
    safe = BATCH_NAME.match(batch) is not None
    done = [name for name, (key, fields) in STAGE_OUTPUTS
            if safe and any(root.glob(str(in_batch(".", key, **fields))))]
    missing = [name for name, _ in STAGE_OUTPUTS if name not in done]
    errors = [f"planning: {rejected}"] if rejected else []
    logs = in_batch(root, "log", step="*")
    for log in sorted(logs.parent.glob(logs.name)) if safe and logs.parent.is_dir() else []:
        msg = last_error(log)
        if msg:
            errors.append(f"{log.stem}: {msg}")
    state = "complete" if not missing else ("failed" if errors else "pending")
    return {"batch": batch, "state": state, "stages_done": ",".join(done),
            "next_stage": missing[0] if missing else "", "error": " | ".join(errors)}


def status_table(batches: list[str], results: str | Path = RESULTS,
                 rejected: dict[str, str] | None = None) -> pd.DataFrame:
    """One row per batch, those to process and those rejected at planning (name -> reason)."""
    rejected = rejected or {}
    rows = [batch_status(Path(results), b) for b in batches]
    rows += [batch_status(Path(results), name, why) for name, why in sorted(rejected.items())]
    return pd.DataFrame(rows, columns=["batch", "state", "stages_done", "next_stage", "error"])
