"""Snakemake adapter for rule ``segment_train``: COCO -> Mask R-CNN checkpoint (GPU or CPU).

A killed job resumes from ``<models_dir>/<model>/work/last_checkpoint`` when run again.
"""

import sys
from pathlib import Path

sys.path.insert(0, f"{snakemake.scriptdir}/../../src")  # noqa: F821 - the workflow's own package

from cellspot.smk import run_step  # noqa: E402


def main(smk):
    from cellspot.segment.train import train_model

    t = dict(smk.params.train)
    # Stop (with a checkpoint) before the job's wall time, keeping a margin for writing outputs.
    runtime_s = 60 * float(smk.resources.runtime)
    time_limit_s = runtime_s - max(300.0, 0.1 * runtime_s)
    train_model(smk.params.model, smk.input.coco, Path(smk.output.checkpoint).parent,
                threads=smk.threads, config_path=smk.input.config[0],
                overrides=dict(smk.params.overrides or {}), depth=smk.params.depth,
                max_iters=t["max_iters"], batch_size=t["batch_size"], lr=t["lr"],
                checkpoint_interval=t["checkpoint_interval"], val_interval=t["val_interval"],
                log_interval=t["log_interval"], amp=t["amp"], seed=t["seed"],
                num_workers=t["num_workers"], crop_size=t["crop_size"] or None,
                load_from=smk.input.pretrained[0] if smk.input.pretrained else None,
                time_limit_s=time_limit_s if time_limit_s > 0 else None,
                outputs={k: smk.output[k] for k in ("checkpoint", "config", "loss_png",
                                                    "tensorboard")})


run_step(snakemake, main)  # noqa: F821
