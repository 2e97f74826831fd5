"""benchmarks/gpu_check.py, every CPU-side piece: it must work the first time it meets a GPU."""

import importlib.util
import json

import pytest

from conftest import REPO


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", REPO / "benchmarks" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_gpu_check_runs_end_to_end_on_the_cpu(gpu_check, tmp_path):
    assert gpu_check.main(["--device", "cpu", "--iters", "2", "--slices", "2", "--size", "128",
                           "--movies", "1", "--work", str(tmp_path)]) == 0
    out = json.loads((tmp_path / "gpu_check.json").read_text())
    assert [(r["model"], r["amp"]) for r in out["train"]] == [
        ("cells", False), ("cells", True), ("spots", False), ("spots", True)]
    assert all(r["iters_per_s"] > 0 and r["final_loss"] is not None for r in out["train"])
    assert not any(r["amp_applied"] for r in out["train"])  # AMP is a CUDA path
    assert set(out["amp_loss_ok"]) == {"cells", "spots"}
    assert all(r["slices_per_s"] > 0 and r["tile_size"] >= 512 for r in out["infer"])


def test_gpu_check_says_plainly_when_there_is_no_gpu(gpu_check, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(SystemExit, match="no CUDA device"):
        gpu_check.main(["--work", str(tmp_path)])
