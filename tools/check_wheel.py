"""Check a built wheel the way a user on another machine would meet it.

Usage: ``python tools/check_wheel.py dist/lmobjectives-*.whl [--allow-missing]`` (``make wheel``
runs it). Checks, failing loudly on the first problem:

1. the wheel's name and WHEEL metadata: one ``cp310-abi3`` wheel tagged ``manylinux_2_17``
   (glibc 2.17, i.e. ``manylinux2014``) for this architecture; the native module is stripped
   (no ``.symtab`` section); LICENSE and NOTICE are inside; its size is reported;
2. the sdist next to it (if any) carries the sources, the lock, the licence and the corpus data;
3. on every CPython 3.10-3.13 found (on ``PATH`` as ``python3.X`` or under pyenv): a fresh
   venv with the wheel and NumPy only — nothing else gets installed — where ``import
   lmobjectives`` and an ``MLMCollator`` call work; then, with ``tokenizers`` added, the
   embedded corpus gives the same fingerprint on every interpreter.

Missing interpreters are listed and fail the check unless ``--allow-missing`` is given: an
untested Python is never skipped silently. Versions of NumPy and tokenizers come from the
committed lock (as constraints), so the check is reproducible.
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements" / "dev.lock"
VERSIONS = ("3.10", "3.11", "3.12", "3.13")

# Run inside each venv with only numpy + the wheel: the core API without optional extras.
CORE_CHECK = r"""
import importlib.metadata as md, sys
import numpy as np
import lmobjectives
from lmobjectives import MLMCollator
installed = sorted(d.metadata["Name"].lower() for d in md.distributions())
assert installed == ["lmobjectives", "numpy"], installed
c = MLMCollator(vocab_size=1000, mask_token_id=4, pad_token_id=0, special_token_ids=[0, 1, 2, 3, 4],
                seed=0, exact_budget=True)
rows = [list(range(5, 5 + n)) for n in (40, 33, 17)]
b = c(rows)
labels = b["labels"]
assert b["input_ids"].shape == (3, 40), b["input_ids"].shape
assert ((labels != -100).sum(axis=1) == [6, 5, 3]).all(), (labels != -100).sum(axis=1)
again = MLMCollator(vocab_size=1000, mask_token_id=4, pad_token_id=0,
                    special_token_ids=[0, 1, 2, 3, 4], seed=0, exact_budget=True)(rows)
assert (again["input_ids"] == b["input_ids"]).all()
print(f"core ok: lmobjectives {lmobjectives.__version__} numpy {np.__version__}")
"""

# Then with tokenizers: the embedded corpus, built from the shipped text.
CORPUS_CHECK = r"""
import sys, tempfile
from lmobjectives import TokenCorpus
from lmobjectives.corpus import default_corpus_fingerprint
with tempfile.TemporaryDirectory() as d:
    corpus = TokenCorpus.default(cache_dir=d, progress=False)
    print("fingerprint", default_corpus_fingerprint(corpus), corpus.num_documents,
          corpus.num_sentences, corpus.num_tokens, corpus.tokenizer.get_vocab_size())
"""


def fail(message: str) -> None:
    print(f"check_wheel: FAIL: {message}", file=sys.stderr)
    sys.exit(1)


def find_pythons() -> dict[str, str]:
    """Each wanted version's interpreter: ``python3.X`` on PATH when it runs (a pyenv shim may
    not), else the newest pyenv build of that version."""
    found: dict[str, str] = {}
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    for v in VERSIONS:
        builds = sorted(
            glob.glob(str(pyenv / f"{v}.*" / "bin" / "python")),
            key=lambda p: [int(x) for x in re.findall(r"\d+", Path(p).parents[1].name)],
        )
        on_path = shutil.which(f"python{v}")
        for exe in [*([on_path] if on_path else []), *reversed(builds)]:
            out = subprocess.run(
                [exe, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                capture_output=True,
                text=True,
            )
            if out.returncode == 0 and out.stdout.strip() == v:
                found[v] = exe
                break
    return found


def check_wheel_file(wheel: Path) -> None:
    name = wheel.name
    if "-cp310-abi3-" not in name:
        fail(f"{name}: expected an abi3 wheel for CPython >= 3.10 (cp310-abi3)")
    if "manylinux_2_17" not in name and "manylinux2014" not in name:
        fail(f"{name}: expected a manylinux2014 (glibc 2.17) tag")
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        so = [n for n in names if n.endswith(".so")]
        if len(so) != 1:
            fail(f"{name}: expected one native module, found {so}")
        for needed in ("LICENSE", "NOTICE"):
            if not any(Path(n).name == needed for n in names):
                fail(f"{name}: no {needed} inside")
        with tempfile.TemporaryDirectory() as d:
            path = z.extract(so[0], d)
            size = os.path.getsize(path)
            sections = subprocess.run(
                ["readelf", "-S", "-W", path], capture_output=True, text=True, check=True
            ).stdout
            if ".symtab" in sections:
                fail(f"{so[0]}: not stripped (has a .symtab section)")
    print(
        f"wheel: {name}: {wheel.stat().st_size / 2**20:.2f} MiB "
        f"(native module {size / 2**20:.2f} MiB, stripped); {len(names)} files"
    )


def check_sdist(dist: Path) -> None:
    sdists = sorted(dist.glob("lmobjectives-*.tar.gz"))
    if not sdists:
        print("sdist: none next to the wheel (not checked)")
        return
    with tarfile.open(sdists[-1]) as t:
        names = {n.split("/", 1)[1] for n in t.getnames() if "/" in n}
    for needed in (
        "pyproject.toml",
        "Cargo.lock",
        "LICENSE",
        "rust/core/src/lib.rs",
        "rust/python/src/lib.rs",
        "python/lmobjectives/__init__.py",
        "python/lmobjectives/data/NOTICE",
    ):
        if needed not in names:
            fail(f"{sdists[-1].name}: {needed} missing")
    print(f"sdist: {sdists[-1].name}: {sdists[-1].stat().st_size / 2**20:.2f} MiB, complete")


def run(cmd: list[str], **kw: object) -> str:
    out = subprocess.run(cmd, capture_output=True, text=True, **kw)  # type: ignore[call-overload]
    if out.returncode != 0:
        fail(f"{' '.join(map(str, cmd))}\n{out.stdout}\n{out.stderr}")
    return str(out.stdout)


def uv() -> list[str]:
    exe = shutil.which("uv") or str(Path(sys.executable).with_name("uv"))
    if not Path(exe).exists():
        fail("uv not found (make wheel installs it from the lock)")
    return [exe]


def check_python(version: str, exe: str, wheel: Path, work: Path) -> str:
    venv = work / f"py{version}"
    run([exe, "-m", "venv", "--without-pip", str(venv)])
    py = str(venv / "bin" / "python")
    install = [*uv(), "pip", "install", "--quiet", "--python", py, "-c", str(LOCK)]
    run([*install, str(wheel)])
    print(f"python {version} ({exe}):")
    print("  " + run([py, "-c", CORE_CHECK], cwd=work).strip())
    run([*install, "tokenizers"])
    line = run([py, "-c", CORPUS_CHECK], cwd=work).strip().splitlines()[-1]
    print("  corpus " + line)
    return line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("wheels", nargs="+", type=Path)
    parser.add_argument("--allow-missing", action="store_true")
    args = parser.parse_args()
    wheels = [w for w in args.wheels if w.suffix == ".whl"]
    if len(wheels) != 1:
        fail(f"expected exactly one wheel, got {[str(w) for w in args.wheels]}")
    wheel = wheels[0].resolve()
    check_wheel_file(wheel)
    check_sdist(wheel.parent)

    pythons = find_pythons()
    missing = [v for v in VERSIONS if v not in pythons]
    print(f"CPython found: {', '.join(pythons) or 'none'}; missing: {', '.join(missing) or 'none'}")
    if missing and not args.allow_missing:
        fail(f"no interpreter for CPython {', '.join(missing)} (pass --allow-missing to accept)")
    if not pythons:
        fail("no CPython 3.10-3.13 interpreter found")
    with tempfile.TemporaryDirectory(prefix="lmobjectives-wheel-") as d:
        lines = {v: check_python(v, exe, wheel, Path(d)) for v, exe in pythons.items()}
    if len(set(lines.values())) != 1:
        fail(f"the embedded corpus differs between interpreters: {lines}")
    print(f"ok: the wheel installs and works on CPython {', '.join(pythons)}; one corpus on all")


if __name__ == "__main__":
    main()
