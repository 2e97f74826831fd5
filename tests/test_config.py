"""The configuration tree (cellspot.config): one source of defaults, a generated schema, and
errors that name the setting."""

import copy
import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from cellspot.config import SCHEMA_PATH, ConfigError, json_schema, resolve
from workflow_helpers import make_workdir, snakemake

REPO = Path(__file__).resolve().parents[1]
CONFIG = yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def test_committed_schema_is_the_generated_one():
    committed = json.loads(SCHEMA_PATH.read_text())
    assert committed == json_schema(), "run: python -m cellspot.config --write-schema"
    jsonschema.Draft202012Validator.check_schema(committed)


@pytest.mark.parametrize("name", ["config.yaml", "demo.yaml", "cpu_train.yaml"])
def test_shipped_configs_are_valid(name):
    cfg = copy.deepcopy(CONFIG)
    extra = yaml.safe_load((REPO / "config" / name).read_text()) or {}
    from workflow_helpers import deep_update

    deep_update(cfg, extra)
    jsonschema.validate(cfg, json.loads(SCHEMA_PATH.read_text()))
    resolve(cfg)


def test_config_yaml_lists_the_defaults():
    """config.yaml is the defaults written out: nothing is defaulted in two places."""
    assert resolve(CONFIG) == resolve({"samples": CONFIG["samples"]})


def test_left_out_keys_take_their_defaults():
    cfg = copy.deepcopy(CONFIG)
    del cfg["segment"]["timepoints_per_job"]
    del cfg["segment"]["models"]["cells"]["infer"]["batch_size"]
    del cfg["report"]
    full = resolve(cfg)
    assert full["segment"]["timepoints_per_job"] == 10
    assert full["segment"]["models"]["cells"]["infer"]["batch_size"] == 8
    assert full["report"]["mem_mb"] == 4000
    # each model keeps its own defaults when only some of its keys are set
    part = resolve({"samples": "", "segment": {"models": {"spots": {"depth": 34}}}})
    spots = part["segment"]["models"]["spots"]
    assert spots["depth"] == 34 and spots["channels"] == ["rna"]
    assert spots["infer"]["tile_size"] == 512


@pytest.mark.parametrize("edit,where", [
    (lambda c: c.pop("samples"), "config: samples: Field required"),
    (lambda c: c["segment"]["models"]["cells"].update(depth=19), "segment.models.cells.depth"),
    (lambda c: c["merge"].update(iou_treshold=0.3), "merge.iou_treshold"),
    (lambda c: c["track"].update(spot_frame="lab"), "track.spot_frame"),
    (lambda c: c["report"].update(n_permutations=0), "report.n_permutations"),
    (lambda c: c["segment"]["models"]["cells"]["training_data"].update(source="labels"),
     "segment.models.cells.training_data: Value error, source 'labels' needs image"),
])
def test_invalid_settings_are_named(edit, where):
    cfg = copy.deepcopy(CONFIG)
    edit(cfg)
    with pytest.raises(ConfigError, match=where.replace(".", r"\.")):
        resolve(cfg)


@pytest.mark.slow
def test_a_removed_required_key_stops_the_dry_run_naming_it(tmp_path):
    wd = make_workdir(tmp_path, {})
    path = wd / "config" / "config.yaml"
    cfg = yaml.safe_load(path.read_text())
    del cfg["samples"]
    path.write_text(yaml.safe_dump(cfg))
    proc = snakemake(wd, "-n", check=False)
    out = (proc.stdout + proc.stderr).strip().splitlines()
    assert proc.returncode != 0 and "samples" in out[-1] and "required" in out[-1], out[-3:]
