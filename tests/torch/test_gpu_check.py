"""``tools/gpu_check.py`` (``make gpu-check``) works: its ``--dry-run`` runs every benchmark at
toy sizes on the CPU and writes the JSON and markdown the docs take."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "tools" / "gpu_check.py"


def _load():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_check_dry_run_writes_json_and_markdown(tmp_path) -> None:
    gpu_check = _load()
    assert gpu_check.main(["--dry-run", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "gpu_check.json").read_text())
    assert result["mode"] == "dry" and result["device"] == "cpu"
    assert [b["name"] for b in result["losses"]] == ["info_nce fwd+bwd", "electra fwd+bwd"]
    for b in [*result["losses"], result["mining"]]:
        assert b["ours_ms"] > 0 and b["reference_ms"] > 0
        assert math.isclose(b["ratio"], b["ours_ms"] / b["reference_ms"], rel_tol=1e-9)
    (pre,) = result["pretrain"]
    assert pre["tokens_per_s"] > 0 and 0 < pre["data_share"] < 1
    md = (tmp_path / "gpu_check.md").read_text()
    assert "| info_nce fwd+bwd |" in md and "| pretrain mlm (fp32) |" in md


def test_gpu_check_without_cuda_says_so(tmp_path, capsys, monkeypatch) -> None:
    import torch

    gpu_check = _load()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_check.main(["--out", str(tmp_path)]) == 2
    assert "no CUDA device" in capsys.readouterr().out
