"""Snakemake adapter for rule ``provenance``: record what produced a batch's results."""

import json
import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../../src")  # noqa: F821 - the workflow's own package

from cellspot.omezarr import write_text_atomic  # noqa: E402
from cellspot.provenance import provenance_record  # noqa: E402
from cellspot.smk import run_step  # noqa: E402


def main(smk):
    record = provenance_record(smk.wildcards.batch, smk.input.movie, smk.params.config,
                               dict(zip(smk.params.models, smk.input.checkpoints)))
    write_text_atomic(smk.output.json, json.dumps(record, indent=2, default=str))


run_step(snakemake, main)  # noqa: F821
