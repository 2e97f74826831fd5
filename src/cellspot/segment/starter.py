"""The starter Mask R-CNN models shipped with cellspot (``checkpoint: builtin``).

No model hub can be reached from a cluster node, so the weights travel with the package. Each
model has a folder ``starter_models/<model>/``::

    checkpoint.pth  fp16 weights and the config text (MMEngine checkpoint layout)
    config.py       the resolved MMDetection config they were trained with (inference builds it)
    card.json       what produced them: recipe, data, seeds, iterations, time, benchmark figures

``recipes/starter_models.py`` rebuilds both from scratch. This module only finds the files and
checks that a configuration fits them; it imports neither torch nor MMDetection (the Snakefile
uses it), except :func:`export_checkpoint`, which the recipe calls.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Mapping

from cellspot.errors import SegmentError
from cellspot.layout import in_model

MODELS = ("cells", "spots")
BUILTIN = "builtin"
STARTER_DIR = Path(__file__).resolve().parents[1] / "starter_models"
# a starter model's folder has a trained model's layout, plus its card
FILES = ("checkpoint", "config", "card")


def setting(model: str, key: str) -> str:
    """The config.yaml key of a model setting, as error messages name it."""
    return f"segment.models.{model}.{key}"


def is_builtin(value) -> bool:
    """Whether a ``checkpoint``/``pretrained`` setting names the shipped starter model."""
    return isinstance(value, str) and value.strip().lower() == BUILTIN


def starter_files(model: str, key: str = "checkpoint") -> dict[str, Path]:
    """Paths of the starter model ``model`` (checkpoint, config, card).

    Raises :class:`SegmentError` naming the setting ``segment.models.<model>.<key>`` when the
    package does not ship that model.
    """
    if model not in MODELS:
        raise SegmentError(f"{setting(model, key)}: cellspot ships starter models for "
                           f"{list(MODELS)}, not {model!r}")
    files = {k: in_model(STARTER_DIR / model, k) for k in FILES}
    missing = [p for p in files.values() if not p.is_file()]
    if missing:
        raise SegmentError(
            f"{setting(model, key)}: {BUILTIN!r} names the starter {model} model, but this "
            f"installation does not ship it ({missing[0]} is missing); rebuild it with "
            "recipes/starter_models.py or set the path of a checkpoint")
    return files


def resolve_checkpoint(model: str, value: str, key: str = "checkpoint") -> str:
    """The checkpoint file a setting names: the shipped one for ``builtin``, else the path as
    given (``""`` stays ``""``: nothing named)."""
    if is_builtin(value):
        return str(starter_files(model, key)["checkpoint"])
    return value or ""


def trained_diameter(model: str) -> dict | None:
    """Nucleus diameters (px: ``low``, ``median``, ``high``) the starter ``model`` was trained
    on (its card), or None (the spots model; a card without them)."""
    try:
        return read_card(model)["training_data"].get("nucleus_diameter_px")
    except (SegmentError, OSError, KeyError):
        return None


def read_card(model: str) -> dict:
    """The card (provenance and benchmark figures) of a starter model."""
    return json.loads(starter_files(model)["card"].read_text())


def first_difference(a, b, path: str = "model") -> str | None:
    """Dotted key and values of the first difference of two nested configs (``None``: equal)."""
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        for k in sorted(set(a) | set(b), key=str):
            if k not in a or k not in b:
                return f"{path}.{k} ({'absent' if k not in a else a[k]!r} vs " \
                       f"{'absent' if k not in b else b[k]!r})"
            d = first_difference(a[k], b[k], f"{path}.{k}")
            if d:
                return d
        return None
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            return f"{path} ({list(a)!r} vs {list(b)!r})"
        for i, (x, y) in enumerate(zip(a, b)):
            d = first_difference(x, y, f"{path}[{i}]")
            if d:
                return d
        return None
    return None if a == b else f"{path} ({a!r} vs {b!r})"


def export_checkpoint(trained: str | os.PathLike, out_dir: str | os.PathLike, config_text: str,
                      card: Mapping, fp16: bool = True) -> dict[str, Path]:
    """Write a trained MMEngine checkpoint as a starter model folder (weights only, fp16).

    The optimiser state and message hub are dropped: what is left is the weights, the config
    text and the class names, which is all inference and fine-tuning need.
    """
    import torch

    from cellspot.omezarr import atomic_output, write_text_atomic

    ckpt = torch.load(str(trained), map_location="cpu", weights_only=False)
    state = ckpt.get("state_dict", ckpt)
    state = {k: (v.half() if fp16 and v.is_floating_point() else v).contiguous()
             for k, v in state.items()}
    meta = ckpt.get("meta") or {}
    slim = {"state_dict": state,
            "meta": {"cfg": config_text, "dataset_meta": meta.get("dataset_meta", {}),
                     "iter": meta.get("iter"), "cellspot_starter": dict(card)}}
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {k: in_model(out_dir, k) for k in FILES}
    with atomic_output(paths["checkpoint"]) as tmp:
        torch.save(slim, tmp)
    write_text_atomic(paths["config"], config_text)
    card = dict(card, checkpoint_mb=round(paths["checkpoint"].stat().st_size / 2**20, 2))
    write_text_atomic(paths["card"], json.dumps(card, indent=2) + "\n")
    return paths
