# Mask R-CNN for cells: classes "nucleus" and "cell" (the whole cell) on 2D slices.
#
# A plain MMDetection 3.3 config. cellspot loads it with mmengine.Config, fills in the data
# paths, the number of iterations and the device settings, applies the overrides under
# `segment: models: cells: overrides:` in config.yaml (a nested dict merged into this one),
# and writes the resolved config next to the checkpoint (models/cells/config.py).
#
# Input: 3 channels (nucleus, cytoplasm, rna stains), float32 normalised so that the
# 1st/99.8th percentiles of the movie map to 0/1 -> mean 0, std 1 below (no ImageNet stats).
# The semantic map background/cytoplasm/nucleus is built by merge from the 3D cells and nuclei
# (cell minus nucleus = cytoplasm; docs/segment.md).

_base_ = ['_base_/maskrcnn_runtime.py']

classes = ('nucleus', 'cell')
in_channels = 3

model = dict(
    type='MaskRCNN',
    data_preprocessor=dict(
        type='DetDataPreprocessor',
        mean=[0.0] * in_channels, std=[1.0] * in_channels,
        bgr_to_rgb=False, pad_mask=True, pad_size_divisor=32),
    backbone=dict(
        # depth 18/34/50/101: cellspot sets neck.in_channels to match the depth.
        # Half-width ResNet-18 (32 base channels) and 64-channel FPN/heads: the shipped starter
        # model (about 4 M weights, 8 MB in fp16) trains on a CPU in an hour or two.
        type='ResNet', depth=18, in_channels=in_channels, num_stages=4,
        base_channels=32, stem_channels=32, out_indices=(0, 1, 2, 3),
        # Trained from scratch by default (no torchvision/ImageNet download); a pretrained
        # Mask R-CNN checkpoint can be given as load_from.
        frozen_stages=-1, norm_cfg=dict(type='BN', requires_grad=True), norm_eval=False,
        style='pytorch', init_cfg=None),
    neck=dict(type='FPN', in_channels=[32, 64, 128, 256], out_channels=64, num_outs=5),
    rpn_head=dict(
        type='RPNHead', in_channels=64, feat_channels=64,
        # Cells and nuclei are ~10-100 px across: smallest anchor 16 px (stride 4 x scale 4)
        # instead of MMDetection's 32 px.
        anchor_generator=dict(type='AnchorGenerator', scales=[4], ratios=[0.5, 1.0, 2.0],
                              strides=[4, 8, 16, 32, 64]),
        bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[.0, .0, .0, .0],
                        target_stds=[1.0, 1.0, 1.0, 1.0]),
        loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=True, loss_weight=1.0),
        loss_bbox=dict(type='L1Loss', loss_weight=1.0)),
    roi_head=dict(
        type='StandardRoIHead',
        bbox_roi_extractor=dict(
            type='SingleRoIExtractor',
            roi_layer=dict(type='RoIAlign', output_size=7, sampling_ratio=0),
            out_channels=64, featmap_strides=[4, 8, 16, 32]),
        bbox_head=dict(
            type='Shared2FCBBoxHead', in_channels=64, fc_out_channels=256, roi_feat_size=7,
            num_classes=len(classes),
            bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0., 0., 0., 0.],
                            target_stds=[0.1, 0.1, 0.2, 0.2]),
            reg_class_agnostic=False,
            loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
            loss_bbox=dict(type='L1Loss', loss_weight=1.0)),
        mask_roi_extractor=dict(
            type='SingleRoIExtractor',
            roi_layer=dict(type='RoIAlign', output_size=14, sampling_ratio=0),
            out_channels=64, featmap_strides=[4, 8, 16, 32]),
        mask_head=dict(
            type='FCNMaskHead', num_convs=4, in_channels=64, conv_out_channels=64,
            num_classes=len(classes),
            loss_mask=dict(type='CrossEntropyLoss', use_mask=True, loss_weight=1.0))),
    train_cfg=dict(
        rpn=dict(
            assigner=dict(type='MaxIoUAssigner', pos_iou_thr=0.7, neg_iou_thr=0.3,
                          min_pos_iou=0.3, match_low_quality=True, ignore_iof_thr=-1),
            sampler=dict(type='RandomSampler', num=256, pos_fraction=0.5, neg_pos_ub=-1,
                         add_gt_as_proposals=False),
            allowed_border=-1, pos_weight=-1, debug=False),
        rpn_proposal=dict(nms_pre=2000, max_per_img=1000,
                          nms=dict(type='nms', iou_threshold=0.7), min_bbox_size=0),
        rcnn=dict(
            assigner=dict(type='MaxIoUAssigner', pos_iou_thr=0.5, neg_iou_thr=0.5,
                          min_pos_iou=0.5, match_low_quality=True, ignore_iof_thr=-1),
            sampler=dict(type='RandomSampler', num=512, pos_fraction=0.25, neg_pos_ub=-1,
                         add_gt_as_proposals=True),
            mask_size=28, pos_weight=-1, debug=False)),
    test_cfg=dict(
        rpn=dict(nms_pre=1000, max_per_img=1000, nms=dict(type='nms', iou_threshold=0.7),
                 min_bbox_size=0),
        rcnn=dict(score_thr=0.05, nms=dict(type='nms', iou_threshold=0.5), max_per_img=200,
                  mask_thr_binary=0.5)))

# ----------------------------------------------------------------- data
data_root = 'coco/cells/'  # set by cellspot (the segment_coco output)
metainfo = dict(classes=classes)

train_pipeline = [
    dict(type='LoadMicroscopyImage', num_channels=in_channels),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True, poly2mask=True),
    # Flips and a transpose give all 8 rotations/reflections of the square (90-degree rotations).
    dict(type='RandomFlip', prob=[0.25, 0.25, 0.25],
         direction=['horizontal', 'vertical', 'diagonal']),
    dict(type='RandomTranspose', prob=0.5),
    dict(type='RandomIntensity', gain=(0.7, 1.4), offset=(-0.1, 0.1), gamma=(0.8, 1.25),
         prob=0.8),
    dict(type='RandomGaussianNoise', sigma=(0.0, 0.05), prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadMicroscopyImage', num_channels=in_channels),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True, poly2mask=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]

train_dataloader = dict(dataset=dict(data_root=data_root, metainfo=metainfo,
                                     pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(data_root=data_root, metainfo=metainfo,
                                   pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'val.json')
test_evaluator = val_evaluator
