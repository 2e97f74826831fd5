"""Snakemake adapter for rule ``segment_infer``: one block of timepoints -> per-slice instances.

The model is loaded once; all z-slices of the block run in batches (GPU if present, else CPU).
"""

import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../../src")  # noqa: F821 - the workflow's own package

from cellspot.smk import run_step  # noqa: E402


def main(smk):
    import torch

    from cellspot.segment.infer import Segmenter, segment_block
    from cellspot.segment.models import check_starter_matches
    from cellspot.segment.starter import trained_diameter

    p = dict(smk.params.infer)
    torch.set_num_threads(max(1, smk.threads))
    if smk.params.builtin:  # the configured model must be the one the starter was trained as
        check_starter_matches(smk.params.model, smk.params.model_config,
                              dict(smk.params.overrides or {}), smk.params.depth)
    seg = Segmenter(smk.input.config[0] if smk.input.config else None, smk.input.checkpoint,
                    batch_size=p["batch_size"], tile_size=p["tile_size"],
                    tile_overlap=p["tile_overlap"], score_threshold=p["score_threshold"],
                    tta=p["tta"], model=smk.params.model)
    segment_block(smk.input.image, smk.output.zarr, seg, smk.params.model,
                  list(smk.params.channels), int(smk.wildcards.start), int(smk.wildcards.stop),
                  z_batch=p["z_batch"], object_diameter_um=p["object_diameter_um"],
                  trained_diameter=trained_diameter(smk.params.model))


run_step(snakemake, main)  # noqa: F821
