# Mask R-CNN for cells plus a semantic head: the cells model of maskrcnn_cells.py with
# MMDetection's Panoptic FPN semantic head on the same FPN, trained on the map
# background 0 / cytoplasm 1 / nucleus 2 painted from the instance masks
# (SemanticFromInstances in maskrcnn_cells.py's training pipeline).
#
# At inference the semantic map comes from this head instead of being derived from the
# instances. Select it with `segment: models: cells: config: config/maskrcnn_cells_semantic.py`;
# docs/segment.md says which of the two measured better.

_base_ = ['maskrcnn_cells.py']

model = dict(
    type='MaskRCNNSemantic',
    # Pad the training map like the image; padding is ignored by the loss.
    data_preprocessor=dict(pad_seg=True, seg_pad_value=255),
    semantic_head=dict(
        # num_things_classes=0: the three classes are all "stuff" to the head, so
        # PanopticFPNHead keeps the map's values 0/1/2 as they are. in_channels follows the FPN.
        type='PanopticFPNHead', num_things_classes=0, num_stuff_classes=2,
        in_channels=256, inner_channels=128, start_level=0, end_level=4,
        norm_cfg=dict(type='GN', num_groups=32, requires_grad=True),
        loss_seg=dict(type='CrossEntropyLoss', ignore_index=255, avg_non_ignore=True,
                      loss_weight=0.5)))
