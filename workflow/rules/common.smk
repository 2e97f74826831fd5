# Shared set-up: config validation, batch discovery, helpers used by every stage's rules.
import functools
import re
import sys
from dataclasses import asdict
from pathlib import Path

from snakemake.logging import logger

# The workflow's own package (src/cellspot), whatever environment runs the Snakefile.
sys.path.insert(0, str(Path(workflow.basedir) / "src"))

from cellspot.batches import discover_batches  # noqa: E402
from cellspot.errors import CellspotError  # noqa: E402
from cellspot.layout import batch_file, model_file, summary_file  # noqa: E402
from cellspot.omezarr import open_array  # noqa: E402
from cellspot.provenance import config_files, workflow_version  # noqa: E402
from cellspot.config import validate_config  # noqa: E402
from cellspot.smk import (  # noqa: E402
    TRAIN_CODE_IGNORE,
    rule_code,
    scaled_mem,
    stop,
    without_resources,
)
from cellspot.segment.starter import (
    is_builtin,
    resolve_checkpoint,
    starter_files,
)  # noqa: E402
from cellspot.tiffio import count_timepoints  # noqa: E402

validate_config(
    config, str(Path(workflow.basedir) / "config/schema/config.schema.json")
)

# A bad row, a missing movie or a batch name given twice skips that batch, not the run.
try:
    PLAN = discover_batches(
        config["samples"] or None, config["inbox"] or None, config["inbox_marker"]
    )
except CellspotError as exc:
    stop(str(exc))
BATCHES = PLAN.batches
for _name, _why in PLAN.rejected.items():
    logger.warning(f"batch {_name} skipped: {_why}")


def processed_elsewhere():
    """Batches with results but no longer listed (e.g. a movie archived from the inbox): the
    summary keeps their rows."""
    found = Path().glob(batch_file("table", batch="*", name="batch_summary"))
    return sorted(p.parts[1] for p in found if p.parts[1] not in BATCHES)


# Per-batch final outputs; each stage's .smk adds its own, `rule all` expands them.
TARGETS = []


wildcard_constraints:
    batch="|".join(re.escape(b) for b in BATCHES) or "__no_batch__",


def batch_info(wildcards):
    """Declared metadata of a batch's movie, as a plain dict (ingest's param; the truth folder
    of a simulated movie is not metadata of the movie)."""
    info = asdict(BATCHES[wildcards.batch])
    info.pop("truth")
    return info


def batch_truth(wildcards):
    """The truth folder of a simulated movie ("" for a real one)."""
    return BATCHES[wildcards.batch].truth or ""


def batch_movie(wildcards):
    return BATCHES[wildcards.batch].path


@functools.cache
def n_timepoints(batch):
    """Timepoints of a batch: from its OME-Zarr once ingested, else from the movie's header."""
    raw = Path(batch_file("raw", batch=batch))
    if (raw / "0" / ".zarray").exists():
        return open_array(raw).shape[0]
    try:
        return count_timepoints(
            BATCHES[batch].path, BATCHES[batch].axes, BATCHES[batch].voxel_size
        )
    except CellspotError as exc:
        # Plan one block; the batch's ingest job then fails with this message, and a bad
        # movie does not stop the other batches from being planned and processed.
        logger.warning(f"batch {batch}: {exc}")
        return 1


def timepoint_blocks(batch):
    """(start, stop) blocks of `segment.timepoints_per_job` timepoints covering the movie."""
    n, k = n_timepoints(batch), config["segment"]["timepoints_per_job"]
    return [(a, min(a + k, n)) for a in range(0, n, k)]


# --------------------------------------------------------------- segmentation (segment.smk)
SEG = config["segment"]
SEG_MODELS_DIR = SEG["models_dir"]
SEG_MODEL_NAMES = ["cells", "spots"]


def _seg(model):
    return SEG["models"][model]


def segment_checkpoint(model):
    """The checkpoint inference uses: the shipped starter model (`builtin`), the user's file,
    or the one segment_train writes (`""`)."""
    if not _seg(model)["checkpoint"]:
        return model_file("checkpoint", SEG_MODELS_DIR, model=model)
    return resolve_checkpoint(model, _seg(model)["checkpoint"])


def segment_infer_config(model):
    """Inference config: the starter model's, the trained model's resolved config, the user's,
    or none (the copy stored inside the checkpoint is used)."""
    ckpt = _seg(model)["checkpoint"]
    if is_builtin(ckpt):
        return [str(starter_files(model)["config"])]
    if not ckpt:
        return [model_file("config", SEG_MODELS_DIR, model=model)]
    return (
        [_seg(model)["checkpoint_config"]] if _seg(model)["checkpoint_config"] else []
    )


def segment_pretrained(model):
    """The checkpoint training starts from ([] for none): the starter model or the user's."""
    ckpt = resolve_checkpoint(model, _seg(model)["pretrained"], "pretrained")
    return [ckpt] if ckpt else []


def segment_channels(model):
    """Channel names of the model's input, from the roles in `channels:`."""
    return [config["channels"].get(role, role) for role in _seg(model)["channels"]]


def segment_preprocess(model):
    """Preprocess settings of each model input, by role: simulated training images are
    normalised and filtered as the movie is before inference."""
    chans = config["preprocess"]["channels"]
    return {
        role: chans.get(role) or chans.get(str(name)) or {}
        for role, name in zip(_seg(model)["channels"], segment_channels(model))
    }


def segment_outputs(batch, model):
    """All block stores of a batch (what merge takes as input)."""
    return [
        rules.segment_infer.output.zarr.format(
            batch=batch, model=model, start=f"{a:04d}", stop=f"{b:04d}"
        )
        for a, b in timepoint_blocks(batch)
    ]


# --------------------------------------------------------------- merge (merge.smk)
def merge_segmentation(wildcards):
    """Block stores of both segmentation models (cells/nuclei and spots) of a batch."""
    return [
        p
        for model in ("cells", "spots")
        for p in segment_outputs(wildcards.batch, model)
    ]
