"""Network variants for quick trainings (tests, benchmarks, the starter-model recipe)."""

from __future__ import annotations


def narrow_overrides(base_channels: int = 32, width: int = 64) -> dict:
    """Overrides for a narrower network (ResNet ``base_channels``, FPN/heads ``width``).

    A low-capacity variant for CPU training or small data: about 4x fewer operations than the
    default widths for spots, whose appearance is simple.
    """
    o = {"model.backbone.base_channels": base_channels,
         "model.backbone.stem_channels": base_channels,
         "model.neck.out_channels": width, "model.rpn_head.in_channels": width,
         "model.rpn_head.feat_channels": width,
         "model.roi_head.bbox_roi_extractor.out_channels": width,
         "model.roi_head.bbox_head.in_channels": width,
         "model.roi_head.bbox_head.fc_out_channels": 4 * width,
         "model.roi_head.mask_roi_extractor.out_channels": width,
         "model.roi_head.mask_head.in_channels": width,
         "model.roi_head.mask_head.conv_out_channels": width}
    return o
