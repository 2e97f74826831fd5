"""Where everything lives: every path under ``results/`` and the models folder, named once.

Rules, scripts, ``cellspot status``, the report and the command line take their paths from here,
so a file is renamed in one place. A path is a pattern whose ``{fields}`` are filled by the
keyword arguments given; fields left out stay as Snakemake wildcards (``{batch}``, ``{model}``,
...). Example::

    batch_file("labels", name="cells")        # 'results/{batch}/labels/cells.zarr'
    batch_file("preprocessed", batch="demo")  # 'results/demo/preprocessed.ome.zarr'

The stage files (``workflow/rules/*.smk``) wire a rule to the rules of their own stage through
``rules.<upstream>.output`` and to other stages through these names, so that each stage can also
run on its own on prepared inputs (the stage tests do).
"""

from __future__ import annotations

import string
from pathlib import Path

RESULTS = "results"

# Per batch, relative to results/{batch}/.
BATCH_FILES = {
    "raw": "raw.ome.zarr",                      # ingest: the movie as OME-Zarr (TCZYX)
    "preprocessed": "preprocessed.ome.zarr",    # preprocess: denoised, normalised, registered
    "drift_csv": "drift.csv",
    "drift_png": "drift.png",
    "segment_block": "segment/{model}/t{start}-{stop}.zarr",  # segment_infer: one block
    "labels": "labels/{name}.zarr",             # merge, track: NGFF label images (TZYX)
    "table": "tables/{name}.parquet",
    "table_csv": "tables/{name}.csv",
    "ctc": "track/ctc",                         # track: Cell Tracking Challenge result folder
    "napari_tracks": "track/cells.tracks.csv",
    "napari_graph": "track/cells.tracks.graph.json",
    "report_html": "report/report.html",
    "figure": "report/figures/{name}.png",
    "truth_json": "report/truth_check.json",    # truth_check (simulated movies only)
    "truth_csv": "report/truth_check.csv",
    "view": "{batch}.ome.zarr",                 # publish: image + labels in one store
    "provenance": "provenance.json",
    "log": "logs/{step}.log",
    "benchmark": "benchmarks/{step}.tsv",
}

# Across batches, relative to results/summary/.
SUMMARY_FILES = {
    "parquet": "batches.parquet",
    "csv": "batches.csv",
    "log": "logs/{step}.log",
    "benchmark": "benchmarks/{step}.tsv",
}

# Trained models, relative to the models folder (config ``segment.models_dir``).
MODEL_FILES = {
    "coco": "{model}/coco",
    "checkpoint": "{model}/checkpoint.pth",
    "config": "{model}/config.py",
    "loss_png": "{model}/loss.png",
    "tensorboard": "{model}/tensorboard",
    "work": "{model}/work",                     # training's checkpoints (a killed job resumes)
    "card": "{model}/card.json",                # a starter model: what produced it, its figures
    "log": "logs/{step}.log",
    "benchmark": "benchmarks/{step}.tsv",
}


def _fill(pattern: str, fields: dict) -> str:
    """``pattern`` with the given fields filled in and the others left as ``{name}``."""
    out = []
    for text, name, spec, conv in string.Formatter().parse(pattern):
        out.append(text)
        if name is None:
            continue
        if name in fields:
            out.append(format(fields[name], spec or ""))
        else:
            out.append("{" + name + (f":{spec}" if spec else "") + "}")
    return "".join(out)


def _lookup(table: dict, key: str, what: str) -> str:
    try:
        return table[key]
    except KeyError:
        raise KeyError(f"no {what} path named {key!r} (known: {sorted(table)})") from None


def batch_dir(batch: str = "{batch}", results: str | Path = RESULTS) -> str:
    """The results folder of a batch."""
    return f"{Path(results).as_posix()}/{batch}"


def batch_file(key: str, batch: str = "{batch}", results: str | Path = RESULTS,
               **fields) -> str:
    """Path of the batch output ``key`` (see :data:`BATCH_FILES`)."""
    rel = _fill(_lookup(BATCH_FILES, key, "batch"), {"batch": batch, **fields})
    return f"{batch_dir(batch, results)}/{rel}"


def summary_file(key: str, results: str | Path = RESULTS, **fields) -> str:
    """Path of the across-batches output ``key`` (see :data:`SUMMARY_FILES`)."""
    rel = _fill(_lookup(SUMMARY_FILES, key, "summary"), fields)
    return f"{Path(results).as_posix()}/summary/{rel}"


def model_file(key: str, models_dir: str | Path, **fields) -> str:
    """Path of the model file ``key`` (see :data:`MODEL_FILES`) under ``models_dir``."""
    rel = _fill(_lookup(MODEL_FILES, key, "model"), fields)
    return f"{Path(models_dir).as_posix()}/{rel}"


def in_batch(folder: str | Path, key: str, **fields) -> Path:
    """Path of the batch output ``key`` inside an existing batch folder (scripts and CLIs that
    are given ``results/<batch>`` itself)."""
    folder = Path(folder)
    return folder / _fill(_lookup(BATCH_FILES, key, "batch"), {"batch": folder.name, **fields})


def in_model(folder: str | Path, key: str) -> Path:
    """Path of the model file ``key`` inside one model's folder (``models/<model>``)."""
    rel = _lookup(MODEL_FILES, key, "model")
    if not rel.startswith("{model}/"):
        raise KeyError(f"{key!r} is not a file of one model's folder")
    return Path(folder) / rel.removeprefix("{model}/")


def in_summary(folder: str | Path, key: str, **fields) -> Path:
    """Path of the across-batches output ``key`` inside a summary folder."""
    return Path(folder) / _fill(_lookup(SUMMARY_FILES, key, "summary"), fields)
