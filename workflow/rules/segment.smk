# Stage: Mask R-CNN segmentation (MMDetection) of cells/nuclei and RNA spots on 2D slices.
#
#   segment_coco   training annotations -> COCO dataset          {models}/{model}/coco/
#   segment_train  COCO -> trained model (GPU job, CPU fallback) {models}/{model}/checkpoint.pth ...
#   segment_infer  one block of timepoints of a batch -> per-slice instances
#                  results/{batch}/segment/{model}/t{start}-{stop}.zarr (+ instances.parquet inside)
#
# With `segment.models.<model>.checkpoint` set (`builtin`: the starter model shipped with cellspot,
# the default), that checkpoint is used and nothing is trained; with `checkpoint: ""` the model is
# trained, starting from `pretrained` (`builtin` by default).
# Helpers (segment_checkpoint, segment_outputs, ...) live in common.smk; timepoint_blocks(batch)
# -> [(start, stop), ...] (stop exclusive): blocks of segment.timepoints_per_job timepoints.
# Inputs come from upstream rules (rules.preprocess.output): include after preprocess.smk.


rule segment_coco:
    output:
        coco=directory(model_file("coco", SEG_MODELS_DIR)),
    log:
        model_file("log", SEG_MODELS_DIR, step="segment_coco_{model}"),
    benchmark:
        model_file("benchmark", SEG_MODELS_DIR, step="segment_coco_{model}")
    wildcard_constraints:
        model="cells|spots",
    conda:
        "../../envs/segment.yaml"
    threads: 1
    resources:
        mem_mb=scaled_mem(8000),
        runtime=60,
    params:
        settings=lambda w: _seg(w.model)["training_data"],
        channels=lambda w: segment_channels(w.model),
        roles=lambda w: _seg(w.model)["channels"],
        preprocess=lambda w: segment_preprocess(w.model),
        code=rule_code("segment_coco.py"),
    script:
        "../scripts/segment_coco.py"


rule segment_train:
    input:
        coco=model_file("coco", SEG_MODELS_DIR),
        # the model config (first) and the _base_ configs it inherits
        config=lambda w: config_files(_seg(w.model)["config"]),
        pretrained=lambda w: segment_pretrained(w.model),
    output:
        checkpoint=model_file("checkpoint", SEG_MODELS_DIR),
        config=model_file("config", SEG_MODELS_DIR),
        loss_png=model_file("loss_png", SEG_MODELS_DIR),
        tensorboard=directory(model_file("tensorboard", SEG_MODELS_DIR)),
    log:
        model_file("log", SEG_MODELS_DIR, step="segment_train_{model}"),
    benchmark:
        model_file("benchmark", SEG_MODELS_DIR, step="segment_train_{model}")
    wildcard_constraints:
        model="cells|spots",
    conda:
        "../../envs/segment.yaml"
    threads: lambda w: _seg(w.model)["train"]["threads"]
    resources:
        gpu=lambda w: _seg(w.model)["train"]["gpu"],
        mem_mb=lambda w, attempt: _seg(w.model)["train"]["mem_mb"] * attempt,
        runtime=lambda w: _seg(w.model)["train"]["runtime"],
    params:
        model=lambda w: w.model,
        depth=lambda w: _seg(w.model)["depth"],
        overrides=lambda w: _seg(w.model)["overrides"],
        train=lambda w: without_resources(_seg(w.model)["train"]),
        code=rule_code("segment_train.py", ignore=TRAIN_CODE_IGNORE),
    script:
        "../scripts/segment_train.py"


rule segment_infer:
    input:
        image=rules.preprocess.output.zarr,
        checkpoint=lambda w: segment_checkpoint(w.model),
        config=lambda w: segment_infer_config(w.model),
    output:
        zarr=directory(batch_file("segment_block")),
    log:
        batch_file("log", step="segment_infer_{model}_t{start}-{stop}"),
    benchmark:
        batch_file("benchmark", step="segment_infer_{model}_t{start}-{stop}")
    wildcard_constraints:
        model="cells|spots",
        start=r"\d{4}",
        stop=r"\d{4}",
    conda:
        "../../envs/segment.yaml"
    threads: lambda w: _seg(w.model)["infer"]["threads"]
    resources:
        gpu=lambda w: _seg(w.model)["infer"]["gpu"],
        mem_mb=lambda w, attempt: _seg(w.model)["infer"]["mem_mb"] * attempt,
        runtime=lambda w: _seg(w.model)["infer"]["runtime"],
    params:
        model=lambda w: w.model,
        channels=lambda w: segment_channels(w.model),
        infer=lambda w: without_resources(_seg(w.model)["infer"]),
        # what the user configured: a `builtin` checkpoint is checked against it
        model_config=lambda w: _seg(w.model)["config"],
        depth=lambda w: _seg(w.model)["depth"],
        overrides=lambda w: _seg(w.model)["overrides"],
        builtin=lambda w: is_builtin(_seg(w.model)["checkpoint"]),
        code=rule_code("segment_infer.py"),
    script:
        "../scripts/segment_infer.py"
