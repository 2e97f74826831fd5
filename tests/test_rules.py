"""Every rule names a pinned conda env that lists every package its script (and the cellspot
modules it uses, transitively) imports."""

import ast
import re
import sys
from pathlib import Path

import pytest
import yaml

from cellspot.provenance import PACKAGES, _module_file, imported_modules

REPO = Path(__file__).resolve().parents[1]
# Import name -> package name in conda-forge / PyPI.
PACKAGE_OF = {
    "skimage": "scikit-image", "yaml": "pyyaml", "cv2": "opencv", "PIL": "pillow",
    "sklearn": "scikit-learn", "torch": "pytorch", "dask": "dask-core",
    "ctc_metrics": "py-ctcmetrics", "ome_zarr": "ome-zarr", "google": "protobuf",
}
# Accepted alternatives (conda-forge splits, PyPI names in a pip: section).
ALIASES = {"pytorch": {"torch"}, "dask-core": {"dask"}, "matplotlib": {"matplotlib-base"},
           "opencv": {"opencv-python", "opencv-python-headless", "py-opencv"}}


def rules():
    """(rule name, env file, script file) for every rule with a script."""
    out = []
    for smk in sorted((REPO / "workflow" / "rules").glob("*.smk")):
        for block in re.split(r"\n(?=rule |checkpoint )", smk.read_text()):
            m = re.match(r"(?:rule|checkpoint) (\w+):", block)
            if not m:
                continue
            conda = re.search(r'conda:\s*\n\s*"([^"]+)"', block)
            script = re.search(r'script:\s*\n\s*"([^"]+)"', block)
            out.append((m.group(1), smk, conda and conda.group(1), script and script.group(1)))
    return out


def third_party_imports(script: Path) -> set[str]:
    """Top-level third-party modules imported by a script and the workflow code it reaches
    (the closure the rule's code fingerprint covers, read the same way)."""
    files = [script] + [_module_file(m) for m in imported_modules(script)]
    found = set()
    for f in files:
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.Import):
                found |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return {m for m in found
            if m not in sys.stdlib_module_names and m not in PACKAGES and m != "snakemake"}


def env_packages(env: Path) -> dict[str, str]:
    """Package -> pinned version listed in a conda env file (dependencies and pip:)."""
    spec = yaml.safe_load(env.read_text())
    out = {}
    for dep in spec["dependencies"]:
        items = dep["pip"] if isinstance(dep, dict) else [dep]
        for item in items:
            m = re.match(r"^([A-Za-z0-9_.\-]+)\s*(==|=)?\s*([^\s]*)", item)
            out[m.group(1).lower()] = m.group(3) or ""
    return out


RULES = rules()


def test_every_rule_has_an_env_and_a_script_or_is_local():
    assert RULES
    for name, smk, conda, script in RULES:
        if name == "all":
            continue
        assert conda, f"rule {name} in {smk.name} names no conda env"
        assert (smk.parent / conda).resolve().exists(), f"rule {name}: {conda} missing"


@pytest.mark.parametrize("name,smk,conda,script", [r for r in RULES if r[3]],
                         ids=[r[0] for r in RULES if r[3]])
def test_env_lists_every_import_pinned(name, smk, conda, script):
    env = env_packages((smk.parent / conda).resolve())
    assert "python" in env
    missing, unpinned = [], []
    for mod in sorted(third_party_imports((smk.parent / script).resolve())):
        pkg = PACKAGE_OF.get(mod, mod).lower().replace("_", "-")
        names = {pkg} | ALIASES.get(pkg, set())
        hit = [n for n in names if n in env]
        if not hit:
            missing.append(f"{mod} ({pkg})")
        elif not re.match(r"^\d", env[hit[0]]):
            unpinned.append(pkg)
    assert not missing, f"rule {name}: {conda} lacks {missing}"
    assert not unpinned, f"rule {name}: {conda} does not pin {unpinned}"


def rule_blocks():
    for name, smk, _, _ in RULES:
        text = smk.read_text()
        start = text.index(f"rule {name}:")
        nxt = re.search(r"\n(rule|checkpoint) \w+:", text[start + 1:])
        yield name, text[start: start + 1 + nxt.start()] if nxt else text[start:]


@pytest.mark.parametrize("name,block", list(rule_blocks()), ids=[r[0] for r in RULES])
def test_rule_declares_resources_log_and_benchmark(name, block):
    if name == "all":
        return
    for key in ("threads:", "mem_mb=", "runtime=", "log:", "benchmark:", "conda:"):
        assert key in block, f"rule {name} lacks {key}"
    # Only the Mask R-CNN rules ask for a GPU; every CPU rule must leave GPUs to them.
    assert ("gpu=" in block) == name.startswith(("segment_train", "segment_infer")), name
    # Memory grows with the attempt (OOM retries).
    assert "attempt" in block or "scaled_mem(" in block, f"rule {name}: mem_mb ignores attempt"


def test_model_configs_and_their_bases_are_training_inputs(tmp_path):
    """Editing a `_base_` config must re-run training: its files are all inputs."""
    from cellspot.provenance import config_files

    cfg = REPO / "config"
    assert config_files(cfg / "maskrcnn_cells.py") == [
        cfg / "maskrcnn_cells.py", cfg / "_base_" / "maskrcnn_runtime.py"]
    assert config_files(cfg / "maskrcnn_spots.py")[1:] == [cfg / "_base_" / "maskrcnn_runtime.py"]
    (tmp_path / "a.py").write_text("_base_ = 'b.py'\nx = 1\n")
    (tmp_path / "b.py").write_text("_base_ = ['a.py']\n")  # a cycle ends, a missing file stays
    (tmp_path / "c.py").write_text("_base_ = ['nothere.py']\n")
    (tmp_path / "d.py").write_text("_base_ = 'c.py'\n")  # bases of bases, in order
    assert config_files(tmp_path / "a.py") == [tmp_path / "a.py", tmp_path / "b.py"]
    assert config_files(tmp_path / "c.py") == [tmp_path / "c.py", tmp_path / "nothere.py"]
    assert config_files(tmp_path / "d.py") == [tmp_path / "d.py", tmp_path / "c.py",
                                               tmp_path / "nothere.py"]
    assert "config_files(" in (REPO / "workflow" / "rules" / "segment.smk").read_text()
