"""The README's Python examples run as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)


def test_readme_has_examples():
    assert len(BLOCKS) >= 2


@pytest.mark.parametrize("code", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_readme_example_runs(code):
    namespace: dict = {}
    exec(compile(code, str(README), "exec"), namespace)
    if "exact_budget=True" in code:  # the claim in its comment: 77 = round(0.15 · 512)
        labels = namespace["batch"]["labels"]
        assert ((labels != -100).sum(axis=1) == 77).all()
    if "PackingCollator(" in code:  # the position_ids shown in its comment
        positions = namespace["batch"]["position_ids"][0, :12].tolist()
        assert positions == [0, 1, 2, 3, 0, 1, 2, 0, 1, 2, 3, 4]
