# Shared set-up: config validation, batch discovery, helpers used by every stage's rules.
import re
import sys
from dataclasses import asdict
from pathlib import Path

from snakemake.utils import validate

# The workflow's own package (src/cellspot), whatever environment runs the Snakefile.
sys.path.insert(0, str(Path(workflow.basedir) / "src"))

from cellspot.batches import discover_batches  # noqa: E402
from cellspot.provenance import code_fingerprint, workflow_version  # noqa: E402


validate(config, "../../config/schema/config.schema.yaml")

BATCHES = discover_batches(config["samples"] or None, config["inbox"] or None,
                           config["inbox_marker"])

# Per-batch final outputs; each stage's .smk adds its own, `rule all` expands them.
TARGETS = []


wildcard_constraints:
    batch="|".join(re.escape(b) for b in BATCHES) or "__no_batch__",


def batch_info(wildcards):
    """Declared metadata of a batch, as a plain dict (a rule param)."""
    return asdict(BATCHES[wildcards.batch])


def batch_movie(wildcards):
    return BATCHES[wildcards.batch].path
