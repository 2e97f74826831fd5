"""The code's own rules: lint and format gates, module size, who may import what, error types."""

import ast
import inspect
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PRODUCT = REPO / "src" / "cellspot"
BIN = Path(sys.executable).parent
GENERATED = PRODUCT / "starter_models"  # resolved MMDetection configs written by the recipe


def product_modules():
    return [p for p in sorted(PRODUCT.rglob("*.py")) if GENERATED not in p.parents]


def _tool(name):
    exe = BIN / name
    if not exe.exists() and shutil.which(name) is None:
        pytest.fail(f"{name} is not installed: run scripts/setup.sh (extra 'test')")
    return str(exe) if exe.exists() else name


def test_ruff_clean():
    res = subprocess.run([_tool("ruff"), "check", "."], cwd=REPO, capture_output=True,
                         text=True)
    assert res.returncode == 0, res.stdout[-4000:]


def test_snakefmt_clean():
    res = subprocess.run([_tool("snakefmt"), "--check", "Snakefile", "workflow/rules"],
                         cwd=REPO, capture_output=True, text=True)
    assert res.returncode == 0, (res.stdout + res.stderr)[-4000:]


def test_no_module_over_600_lines():
    long = {str(p.relative_to(REPO)): n for p in product_modules() + sorted(
        (REPO / "src" / "cellspot_bench").glob("*.py"))
        if (n := len(p.read_text().splitlines())) > 620}
    assert not long, f"split these along their seams: {long}"


def test_product_never_imports_the_evaluation_package():
    """Evaluation and baselines (cellspot_bench) serve benchmarks and tests, not the product."""
    bad = []
    for p in product_modules():
        for node in ast.walk(ast.parse(p.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            bad += [f"{p.relative_to(REPO)}: {n}" for n in names
                    if n.split(".")[0] in ("cellspot_bench", "laptrack", "ctc_metrics")]
    assert not bad, bad


def test_every_error_class_is_a_cellspot_error():
    """A user-facing problem ends as one line (cellspot.smk.run_step, the CLI) only if its type
    is a CellspotError; no module defines an error type of its own outside that tree."""
    import importlib

    from cellspot.errors import CellspotError

    stray = []
    for p in product_modules():
        mod = ".".join(p.relative_to(REPO / "src").with_suffix("").parts)
        if mod.endswith("__main__"):
            continue
        m = importlib.import_module(mod.removesuffix(".__init__"))
        for name, obj in vars(m).items():
            if (inspect.isclass(obj) and issubclass(obj, Exception)
                    and obj.__module__ == m.__name__ and not issubclass(obj, CellspotError)):
                stray.append(f"{mod}.{name}")
    assert not stray, stray


def test_code_fingerprint_follows_imports(tmp_path):
    """A rule's code fingerprint covers the modules its script reaches, and only those."""
    from cellspot.provenance import imported_modules
    from cellspot.smk import SCRIPTS_DIR

    merge = imported_modules(SCRIPTS_DIR / "merge_run.py")
    assert {"cellspot.merge.stitch", "cellspot.merge.molecules", "cellspot.segment_store",
            "cellspot.distance"} <= set(merge)
    assert not any(m.startswith(("cellspot.track", "cellspot.report", "cellspot_bench"))
                   for m in merge)
    check = imported_modules(SCRIPTS_DIR / "truth_check.py")
    assert "cellspot_bench.metrics" in check and "cellspot_bench.ctc_eval" in check
    ignored = imported_modules(SCRIPTS_DIR / "merge_run.py", ignore=("cellspot.merge",))
    assert not any(m.startswith("cellspot.merge") for m in ignored)
