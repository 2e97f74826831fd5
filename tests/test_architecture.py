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
    from cellspot.smk import CODE_IGNORE, SCRIPTS_DIR

    merge = imported_modules(SCRIPTS_DIR / "merge_run.py", CODE_IGNORE)
    assert {"cellspot.merge.stitch", "cellspot.merge.molecules", "cellspot.segment.store",
            "cellspot.distance"} <= set(merge)
    assert not any(m.startswith(("cellspot.track", "cellspot.report", "cellspot_bench"))
                   for m in merge)
    check = imported_modules(SCRIPTS_DIR / "truth_check.py", CODE_IGNORE)
    assert "cellspot_bench.metrics" in check and "cellspot_bench.ctc_eval" in check
    ignored = imported_modules(SCRIPTS_DIR / "merge_run.py", CODE_IGNORE + ("cellspot.merge",))
    assert not any(m.startswith("cellspot.merge") for m in ignored)


def _code_strings(path: Path):
    """String constants of a module that are code, not documentation (docstrings, help=)."""
    tree = ast.parse(path.read_text())
    skip = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) \
                and isinstance(body[0].value, ast.Constant):
            skip.add(id(body[0].value))
        if isinstance(node, ast.keyword) and node.arg in ("help", "description"):
            skip |= {id(n) for n in ast.walk(node.value)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
            yield node.lineno, node.value


def test_results_paths_only_in_the_layout_module():
    """Every path under results/ is named once, in cellspot.layout."""
    import re

    from cellspot import layout

    # "results/", and every file name of the layout; a name made of a field ("{name}.parquet")
    # counts with its folder ("tables/<any>.parquet")
    def name_pattern(rel):
        parts = rel.split("/")
        keep = parts[-2:] if "{" in parts[-1] and len(parts) > 1 else parts[-1:]
        return re.sub(r"\\\{\w+\\\}", "[^/]*", re.escape("/".join(keep)))

    names = {name_pattern(v) for table in (layout.BATCH_FILES, layout.SUMMARY_FILES,
                                           layout.MODEL_FILES) for v in table.values()
             if "." in v.rsplit("/", 1)[-1]}
    pat = re.compile(r"(^|/)results/|(^|/)(" + "|".join(sorted(names)) + ")$")
    # simulate writes the truth folder, a format of its own (truth/drift.csv is not a result)
    own = {PRODUCT / "layout.py", PRODUCT / "simulate.py"}
    files = [p for p in product_modules() if p not in own]
    files += sorted((REPO / "workflow" / "scripts").glob("*.py"))
    found = [f"{p.relative_to(REPO)}:{n}: {s!r}" for p in files for n, s in _code_strings(p)
             if pat.search(s)]
    for smk in sorted((REPO / "workflow" / "rules").glob("*.smk")) + [REPO / "Snakefile"]:
        for n, line in enumerate(smk.read_text().splitlines(), 1):
            code = line.split("#")[0]
            if re.search(r"[\"']results/|\.ome\.zarr[\"']|\.parquet[\"']", code):
                found.append(f"{smk.relative_to(REPO)}:{n}: {line.strip()}")
    assert not found, found
