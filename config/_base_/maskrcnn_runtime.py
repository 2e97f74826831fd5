# What the cellspot Mask R-CNN configs share: COCO dataloaders of .npy slices, an iteration-based
# schedule with AdamW, and the MMEngine runtime (checkpoints, logging, TensorBoard).
#
# A model config inherits it with `_base_ = ['_base_/maskrcnn_runtime.py']` and adds its model,
# `classes`, pipelines and `data_root` (dicts merge into these; lists replace).

custom_imports = dict(imports=['cellspot.segment.models'], allow_failed_imports=False)

# ----------------------------------------------------------------- data
dataset_type = 'CocoDataset'
train_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    batch_sampler=None,
    dataset=dict(type=dataset_type, ann_file='train.json', data_prefix=dict(img=''),
                 filter_cfg=dict(filter_empty_gt=False, min_size=0)))
val_dataloader = dict(
    batch_size=1, num_workers=0, persistent_workers=False, drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type=dataset_type, ann_file='val.json', data_prefix=dict(img=''),
                 test_mode=True))
test_dataloader = val_dataloader
val_evaluator = dict(type='CocoMetric', metric=['bbox', 'segm'], format_only=False)
test_evaluator = val_evaluator

# ----------------------------------------------------------------- schedule
max_iters = 20000
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=2000)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
# AdamW trains a from-scratch Mask R-CNN with small batches more robustly than SGD; cellspot
# switches the wrapper to AmpOptimWrapper (mixed precision) on a GPU.
optim_wrapper = dict(type='OptimWrapper',
                     optimizer=dict(type='AdamW', lr=2e-4, weight_decay=0.05),
                     clip_grad=dict(max_norm=10.0, norm_type=2))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=200),
    dict(type='MultiStepLR', by_epoch=False, begin=0, end=max_iters,
         milestones=[int(max_iters * 0.75), int(max_iters * 0.9)], gamma=0.1),
]

# ----------------------------------------------------------------- runtime
default_scope = 'mmdet'
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    # log_metric_by_epoch=False: validation metrics are logged at their iteration.
    logger=dict(type='LoggerHook', interval=20, log_metric_by_epoch=False),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=1000, max_keep_ckpts=2,
                    save_last=True),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='DetVisualizationHook'))
env_cfg = dict(cudnn_benchmark=False, mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
               dist_cfg=dict(backend='nccl'))
vis_backends = [dict(type='LocalVisBackend'), dict(type='TensorboardVisBackend')]
visualizer = dict(type='DetLocalVisualizer', vis_backends=vis_backends, name='visualizer')
log_processor = dict(type='LogProcessor', window_size=20, by_epoch=False)
log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=0)
