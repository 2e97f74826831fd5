# Mask R-CNN for RNA spots: one class "spot", objects of 3-10 px across, hundreds per slice.
#
# A plain MMDetection 3.3 config, loaded, completed and overridden by cellspot like
# maskrcnn_cells.py (overrides under `segment: models: spots: overrides:` in config.yaml).
#
# Tiny-object settings (MMDetection's defaults never match a 3-6 px spot: its smallest anchor
# is 32 px):
# - the input is upscaled 2x (Resize scale_factor below), so a 3-10 px spot is 6-20 px;
# - only the two finest feature levels (strides 4 and 8; a 2-stage ResNet, cheap) with anchors
#   of 6 and 10 px at stride 4 and 12 and 20 px at stride 8 (upscaled), i.e. 3-10 px in the
#   original image, square only (spots are round);
# - RoIs are pooled from the finest level (stride 4) alone, into 7x7, and the mask head predicts
#   14x14 masks (28x28 would be >1 mask pixel per sub-pixel of a 3 px spot);
# - looser IoU thresholds for the RPN (a 2 px offset already costs a tiny box half its IoU):
#   every 3-10 px spot has an anchor above min_pos_iou (tests/test_segment_models.py);
# - up to 1000 detections per image.
# The sub-pixel spot position (intensity-weighted centroid of each mask on the input image) is
# computed by cellspot at inference.

_base_ = ['_base_/maskrcnn_runtime.py']

classes = ('spot',)
in_channels = 1
upscale = 2.0

model = dict(
    type='MaskRCNN',
    data_preprocessor=dict(
        type='DetDataPreprocessor',
        mean=[0.0] * in_channels, std=[1.0] * in_channels,
        bgr_to_rgb=False, pad_mask=True, pad_size_divisor=32),
    backbone=dict(
        type='ResNet', depth=18, in_channels=in_channels, num_stages=2,
        strides=(1, 2), dilations=(1, 1), out_indices=(0, 1),
        frozen_stages=-1, norm_cfg=dict(type='BN', requires_grad=True), norm_eval=False,
        style='pytorch', init_cfg=None),
    neck=dict(type='FPN', in_channels=[64, 128], out_channels=128, num_outs=2),
    rpn_head=dict(
        type='RPNHead', in_channels=128, feat_channels=128,
        anchor_generator=dict(type='AnchorGenerator', scales=[1.5, 2.5], ratios=[1.0],
                              strides=[4, 8]),
        bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[.0, .0, .0, .0],
                        target_stds=[1.0, 1.0, 1.0, 1.0]),
        loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=True, loss_weight=1.0),
        loss_bbox=dict(type='L1Loss', loss_weight=1.0)),
    roi_head=dict(
        type='StandardRoIHead',
        bbox_roi_extractor=dict(
            type='SingleRoIExtractor',
            roi_layer=dict(type='RoIAlign', output_size=7, sampling_ratio=2),
            out_channels=128, featmap_strides=[4]),
        bbox_head=dict(
            type='Shared2FCBBoxHead', in_channels=128, fc_out_channels=256, roi_feat_size=7,
            num_classes=len(classes),
            bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0., 0., 0., 0.],
                            target_stds=[0.1, 0.1, 0.2, 0.2]),
            reg_class_agnostic=False,
            loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
            loss_bbox=dict(type='L1Loss', loss_weight=1.0)),
        mask_roi_extractor=dict(
            type='SingleRoIExtractor',
            roi_layer=dict(type='RoIAlign', output_size=7, sampling_ratio=2),
            out_channels=128, featmap_strides=[4]),
        mask_head=dict(
            type='FCNMaskHead', num_convs=2, roi_feat_size=7, in_channels=128,
            conv_out_channels=128, num_classes=len(classes),
            loss_mask=dict(type='CrossEntropyLoss', use_mask=True, loss_weight=1.0))),
    train_cfg=dict(
        rpn=dict(
            # A 3 px spot half-way between two stride-4 anchor centres overlaps its best anchor
            # with IoU ~0.36: positives from 0.4, and every spot's best anchor from 0.2.
            assigner=dict(type='MaxIoUAssigner', pos_iou_thr=0.4, neg_iou_thr=0.25,
                          min_pos_iou=0.2, match_low_quality=True, ignore_iof_thr=-1),
            sampler=dict(type='RandomSampler', num=256, pos_fraction=0.5, neg_pos_ub=-1,
                         add_gt_as_proposals=False),
            allowed_border=-1, pos_weight=-1, debug=False),
        rpn_proposal=dict(nms_pre=2000, max_per_img=1000,
                          nms=dict(type='nms', iou_threshold=0.7), min_bbox_size=0),
        rcnn=dict(
            assigner=dict(type='MaxIoUAssigner', pos_iou_thr=0.5, neg_iou_thr=0.5,
                          min_pos_iou=0.5, match_low_quality=True, ignore_iof_thr=-1),
            # 256 RoIs per image (MMDetection: 512) keep CPU iterations affordable; 64 positives
            # per image still cover a slice with hundreds of spots over a few iterations.
            sampler=dict(type='RandomSampler', num=256, pos_fraction=0.25, neg_pos_ub=-1,
                         add_gt_as_proposals=True),
            mask_size=14, pos_weight=-1, debug=False)),
    test_cfg=dict(
        rpn=dict(nms_pre=6000, max_per_img=3000, nms=dict(type='nms', iou_threshold=0.7),
                 min_bbox_size=0),
        # Neighbouring spots overlap little: a low NMS IoU removes duplicates only.
        rcnn=dict(score_thr=0.05, nms=dict(type='nms', iou_threshold=0.3), max_per_img=1000,
                  mask_thr_binary=0.5)))

# ----------------------------------------------------------------- data
data_root = 'coco/spots/'  # set by cellspot (the segment_coco output)
metainfo = dict(classes=classes)

train_pipeline = [
    dict(type='LoadMicroscopyImage', num_channels=in_channels),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True, poly2mask=True),
    dict(type='Resize', scale_factor=upscale, keep_ratio=True),
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
    dict(type='Resize', scale_factor=upscale, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True, poly2mask=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]

train_dataloader = dict(dataset=dict(data_root=data_root, metainfo=metainfo,
                                     pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(data_root=data_root, metainfo=metainfo,
                                   pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'val.json',
                     proposal_nums=(100, 300, 1000))
test_evaluator = val_evaluator
