"""Optional dependencies name the extra that installs them (:mod:`lmobjectives._optional`).

An absent package is simulated with ``sys.modules[name] = None`` (``import name`` then raises
``ModuleNotFoundError`` with ``name`` set, as for a package that is not installed), in this
process through ``monkeypatch`` or in a subprocess through a ``-c`` prelude.
"""

from __future__ import annotations

import ast
import importlib
import json
import pickle
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import lmobjectives
from lmobjectives._optional import EXTRAS, MissingDependencyError, available, require
from lmobjectives.lab import cli

PACKAGE_DIR = Path(lmobjectives.__file__).parent
PYPROJECT = PACKAGE_DIR.parents[1] / "pyproject.toml"

# The lab's modules built on lmobjectives.torch: without torch they fail as it does.
TORCH_LAB = [
    "lmobjectives.lab.compare",
    "lmobjectives.lab.gan_bench",
    "lmobjectives.lab.pretrain",
    "lmobjectives.lab.probes",
]

# The distribution (as pyproject.toml spells it) that provides each optional module.
DISTRIBUTIONS = {"faiss": "faiss-cpu", "sentence_transformers": "sentence-transformers"}


def _hint(extra: str) -> str:
    return f"pip install 'lmobjectives[{extra}]'"


def _run_python(prelude: str, code: str, *, timeout: float = 240) -> subprocess.CompletedProcess:
    """``code`` in a fresh interpreter after ``prelude`` (which blocks imports)."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(prelude) + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _block(*modules: str) -> str:
    return "import sys\n" + "".join(f"sys.modules[{m!r}] = None\n" for m in modules)


# -- EXTRAS against pyproject.toml -------------------------------------------------------------


def _optional_dependencies() -> dict[str, list[str]]:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        tomllib = pytest.importorskip("tomli")
    if not PYPROJECT.is_file():
        pytest.skip("not a source checkout (no pyproject.toml next to the package)")
    with PYPROJECT.open("rb") as f:
        return tomllib.load(f)["project"]["optional-dependencies"]


def _requirement_name(spec: str) -> str:
    return re.split(r"[\s\[<>=!~;@]", spec.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _installs(extras: dict[str, list[str]], extra: str, seen: frozenset[str] = frozenset()) -> set:
    """The distributions ``pip install 'lmobjectives[extra]'`` installs (extras of extras too)."""
    out: set[str] = set()
    for spec in extras[extra]:
        name = _requirement_name(spec)
        if name == "lmobjectives":
            inner = re.search(r"\[([^\]]*)\]", spec)
            assert inner, spec
            for e in inner.group(1).split(","):
                if e.strip() not in seen:
                    out |= _installs(extras, e.strip(), seen | {extra})
        else:
            out.add(name)
    return out


def test_every_extra_exists_and_installs_its_module():
    extras = _optional_dependencies()
    for module, extra in EXTRAS.items():
        assert extra in extras, f"EXTRAS[{module!r}] = {extra!r}: no such extra in pyproject.toml"
        dist = DISTRIBUTIONS.get(module, module).lower()
        assert dist in _installs(extras, extra), f"lmobjectives[{extra}] does not install {dist}"


# -- require -----------------------------------------------------------------------------------


@pytest.fixture
def fake_packages(tmp_path, monkeypatch):
    """Packages made in ``tmp_path`` and registered as optional (extra ``fake``):
    ``lmo_fake_good`` (with a submodule ``sub``), ``lmo_fake_inner`` (its ``__init__`` imports
    a module that does not exist), ``lmo_fake_own`` and ``lmo_fake_ext`` (their ``__init__``
    imports a submodule of their own that does not exist, as with a broken compiled extension,
    in the two spellings) and ``lmo_fake_absent`` (not there at all)."""
    files = {
        "lmo_fake_good/__init__.py": "VALUE = 1\n",
        "lmo_fake_good/sub.py": "VALUE = 2\n",
        "lmo_fake_inner/__init__.py": "import lmo_fake_nowhere  # noqa\n",
        "lmo_fake_own/__init__.py": "from lmo_fake_own import _C  # noqa\n",
        "lmo_fake_ext/__init__.py": "import lmo_fake_ext._C  # noqa\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(text)
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    for name in (
        "lmo_fake_good",
        "lmo_fake_inner",
        "lmo_fake_own",
        "lmo_fake_ext",
        "lmo_fake_absent",
    ):
        monkeypatch.setitem(EXTRAS, name, "fake")
    yield
    for name in [m for m in sys.modules if m.startswith("lmo_fake_")]:
        del sys.modules[name]


def test_require_imports_an_installed_package(fake_packages):
    assert require("lmo_fake_good").VALUE == 1
    assert require("lmo_fake_good.sub", "a test").VALUE == 2
    assert available("lmo_fake_good")


def test_require_names_the_extra_of_a_missing_package(fake_packages):
    with pytest.raises(MissingDependencyError) as info:
        require("lmo_fake_absent", "a test")
    e = info.value
    assert isinstance(e, ImportError)
    assert (e.module, e.extra, e.purpose, e.name) == ("lmo_fake_absent", "fake", "a test", e.module)
    assert str(e) == "lmo_fake_absent is not installed (needed for a test): " + _hint("fake")
    assert e.__cause__ is None and e.__suppress_context__  # one line, no chained traceback
    with pytest.raises(MissingDependencyError, match=re.escape(_hint("fake"))):
        require("lmo_fake_absent.sub")  # a submodule of a missing package names it too
    assert str(MissingDependencyError("m", "x")) == "m is not installed: " + _hint("x")
    assert not available("lmo_fake_absent")


@pytest.mark.parametrize(
    ("name", "missing"),
    [
        ("lmo_fake_inner", "lmo_fake_nowhere"),  # a dependency of the package is missing
        ("lmo_fake_own", "lmo_fake_own"),  # "cannot import name '_C' from ... lmo_fake_own"
        ("lmo_fake_ext", "lmo_fake_ext._C"),  # a submodule it imports itself is missing
        ("lmo_fake_good.nope", "lmo_fake_good.nope"),  # installed, without that submodule
    ],
)
def test_require_does_not_mistranslate_a_broken_install(fake_packages, name, missing):
    with pytest.raises(ImportError) as info:
        require(name)
    assert not isinstance(info.value, MissingDependencyError), info.value
    assert info.value.name == missing
    with pytest.raises(ImportError) as info:
        available(name)  # a broken install is not "not installed" either
    assert not isinstance(info.value, MissingDependencyError)


def test_require_sees_a_blocked_package_even_with_its_submodules_loaded(fake_packages, monkeypatch):
    require("lmo_fake_good.sub")  # now in sys.modules
    monkeypatch.setitem(sys.modules, "lmo_fake_good", None)
    with pytest.raises(MissingDependencyError, match=re.escape(_hint("fake"))):
        require("lmo_fake_good.sub")


@pytest.mark.parametrize(("module", "extra"), sorted(EXTRAS.items()))
def test_require_blocked_optional_dependency(monkeypatch, module, extra):
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(MissingDependencyError) as info:
        require(module, "x")
    assert str(info.value) == f"{module} is not installed (needed for x): {_hint(extra)}"


def test_require_refuses_unknown_names():
    with pytest.raises(KeyError, match="numpy"):
        require("numpy")
    assert "numpy" not in EXTRAS


def test_missing_dependency_error_pickles():
    e = MissingDependencyError("torch", "torch", 'return_tensors="pt"')
    back = pickle.loads(pickle.dumps(e))
    assert type(back) is MissingDependencyError
    assert (str(back), back.module, back.extra, back.purpose, back.name) == (
        str(e),
        "torch",
        "torch",
        'return_tensors="pt"',
        "torch",
    )
    assert lmobjectives.MissingDependencyError is MissingDependencyError


# -- no optional import bypasses require -------------------------------------------------------


def _direct_optional_imports(path: Path) -> list[str]:
    """``line: statement`` for each import of an optional package in ``path`` that does not go
    through :func:`require` (``if TYPE_CHECKING:`` blocks and docstrings excepted; inside
    ``lmobjectives/torch/`` torch itself is allowed: its ``__init__`` checks it once)."""
    tree = ast.parse(path.read_text(), str(path))
    in_torch = "torch" in path.relative_to(PACKAGE_DIR).parts[:-1]
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    found = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif (
            isinstance(node, ast.Call)
            and ast.unparse(node.func) in ("__import__", "importlib.import_module", "import_module")
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            names = [str(node.args[0].value)]
        for name in names:
            top = name.partition(".")[0]
            if top in EXTRAS and not (in_torch and top == "torch"):
                found.append(f"{node.lineno}: {ast.unparse(node)}")
    return found


@pytest.mark.parametrize(
    "relative",
    [
        p.relative_to(PACKAGE_DIR).as_posix()
        for p in sorted(PACKAGE_DIR.rglob("*.py"))
        if p.name != "_optional.py"
    ],
)
def test_optional_packages_are_imported_through_require(relative):
    assert _direct_optional_imports(PACKAGE_DIR / relative) == []


# -- return_tensors="pt" -----------------------------------------------------------------------


def _collators(tok):
    from lmobjectives.lab.baselines.numpy_reference import NumpyMLMCollator

    return {
        "MLMCollator": lambda rt: lmobjectives.MLMCollator(tok, return_tensors=rt),
        "MLMCollator.electra": lambda rt: lmobjectives.MLMCollator.electra(tok, return_tensors=rt),
        "PackingCollator": lambda rt: lmobjectives.PackingCollator(
            max_length=64, pad_token_id=0, return_tensors=rt
        ),
        "T5SpanCorruptionCollator": lambda rt: lmobjectives.T5SpanCorruptionCollator(
            tok, return_tensors=rt
        ),
        "UL2Collator": lambda rt: lmobjectives.UL2Collator(tok, return_tensors=rt),
        "BartDenoisingCollator": lambda rt: lmobjectives.BartDenoisingCollator(
            tok, return_tensors=rt
        ),
        "ContrastivePairCollator": lambda rt: lmobjectives.ContrastivePairCollator(
            tok, return_tensors=rt
        ),
        "NumpyMLMCollator": lambda rt: NumpyMLMCollator(tok, return_tensors=rt),
    }


def test_mlm_collator_pt_without_torch_fails_at_construction(small_tokenizer, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(MissingDependencyError) as info:
        lmobjectives.MLMCollator(small_tokenizer, return_tensors="pt")
    assert info.value.extra == "torch"
    assert str(info.value) == (
        'torch is not installed (needed for return_tensors="pt"): ' + _hint("torch")
    )
    batch = lmobjectives.MLMCollator(small_tokenizer, seed=0)([[2, 7, 8, 9, 3]])  # "np" works
    assert batch["input_ids"].shape == (1, 5)


@pytest.mark.parametrize(
    "name",
    [
        "MLMCollator.electra",
        "PackingCollator",
        "T5SpanCorruptionCollator",
        "UL2Collator",
        "BartDenoisingCollator",
        "ContrastivePairCollator",
        "NumpyMLMCollator",
    ],
)
def test_every_collator_checks_torch_at_construction(small_tokenizer, monkeypatch, name):
    make = _collators(small_tokenizer)[name]
    monkeypatch.setitem(sys.modules, "torch", None)
    make("np")
    with pytest.raises(MissingDependencyError, match=re.escape(_hint("torch"))):
        make("pt")


def test_hf_baselines_name_their_extras(small_tokenizer, monkeypatch):
    from lmobjectives.lab.baselines.huggingface import hf_mlm_collator, hf_tokenizer

    monkeypatch.setitem(sys.modules, "transformers", None)
    for make in (lambda: hf_tokenizer(small_tokenizer), lambda: hf_mlm_collator(small_tokenizer)):
        with pytest.raises(MissingDependencyError, match=re.escape(_hint("bench"))):
            make()


# -- lmobjectives.torch and the core without extras ----------------------------------------------


def _modules(under: Path, prefix: str) -> list[str]:
    out = []
    for p in sorted(under.rglob("*.py")):
        parts = list(p.relative_to(under).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out.append(".".join([prefix, *parts]))
    return out


def test_import_lmobjectives_torch_without_torch_names_the_extra():
    expected = f"torch is not installed (needed for lmobjectives.torch): {_hint('torch')}"
    result = _run_python(_block("torch"), "import lmobjectives.torch\n")
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last == f"lmobjectives._optional.MissingDependencyError: {expected}", result.stderr
    # Every submodule fails the same way, from the one check in lmobjectives/torch/__init__.py,
    # and so do the lab's modules built on them.
    modules = _modules(PACKAGE_DIR / "torch", "lmobjectives.torch") + TORCH_LAB
    assert "lmobjectives.torch.gan.seqgan" in modules
    code = """
        import importlib, json
        from lmobjectives import MissingDependencyError
        out = {}
        for name in MODULES:
            try:
                importlib.import_module(name)
                out[name] = "imported"
            except MissingDependencyError as e:
                out[name] = str(e)
        print(json.dumps(out))
    """
    result = _run_python(_block("torch") + f"MODULES = {modules!r}\n", code)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == dict.fromkeys(modules, expected)


def test_the_core_imports_without_any_extra():
    """Everything outside lmobjectives.torch (and the lab's modules built on it) imports with
    every optional package absent (they are imported when used), and the NumPy collators
    work."""
    modules = [
        m
        for m in _modules(PACKAGE_DIR, "lmobjectives")
        if not m.startswith("lmobjectives.torch")
        and m not in TORCH_LAB
        and m != "lmobjectives.__main__"
    ]
    assert "lmobjectives.lab.cli" in modules
    code = f"""
        import importlib
        for name in {modules!r}:
            importlib.import_module(name)
        import lmobjectives
        batch = lmobjectives.PackingCollator(layout="flat", pad_token_id=0)([[5, 6], [7]])
        print(sorted(batch), sorted(m for m in {sorted(EXTRAS)!r} if sys.modules.get(m)))
    """
    result = _run_python(_block(*EXTRAS), code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("[]"), result.stdout
    assert "input_ids" in result.stdout


# -- the command line --------------------------------------------------------------------------

NEEDS = [
    # (argv, blocked module, extra named)
    ([], "tokenizers", "corpus"),
    (["--quick"], "tokenizers", "corpus"),
    *[
        (["bench", "--objective", objective, "--quick"], "tokenizers", "corpus")
        for objective in ("mlm", "wwm", "packing", "pairs", "t5", "bart", "all")
    ],
    (["bench", "--objective", "wwm", "--quick"], "transformers", "bench"),
    (["bench", "--objective", "all", "--quick"], "transformers", "bench"),
    (["corpus"], "tokenizers", "corpus"),
    (["corpus", "--rebuild"], "tokenizers", "corpus"),
    (["pretrain", "--steps", "1"], "torch", "torch"),
    (["pretrain", "--objective", "t5", "--steps", "1"], "tokenizers", "corpus"),
    (["gan-bench", "--quick"], "torch", "torch"),
    (["gan-bench", "--quick"], "matplotlib", "plot"),
]


@pytest.fixture
def no_work(monkeypatch):
    """Makes every command's work fail the test if it starts."""

    def started(*args, **kwargs):
        raise AssertionError("the command started its work before checking its dependencies")

    for name in ("_load_corpus", "_bench_mining", "_run_gan_bench"):
        monkeypatch.setattr(cli, name, started)


@pytest.mark.parametrize(("argv", "blocked", "extra"), NEEDS)
def test_cli_names_the_missing_extra_before_working(
    argv, blocked, extra, monkeypatch, capsys, tmp_path, no_work
):
    monkeypatch.setitem(sys.modules, blocked, None)
    assert cli.main([*argv, "--cache-dir", str(tmp_path)]) == 1
    out, err = capsys.readouterr()
    assert out == ""  # nothing started (no corpus line, no progress)
    assert err.count("\n") == 1, err
    assert re.fullmatch(
        rf"lmobjectives: error: {blocked} is not installed \(needed for [^)]+\): "
        + re.escape(_hint(extra))
        + "\n",
        err,
    ), err
    assert list(tmp_path.iterdir()) == []  # no corpus built


@pytest.mark.parametrize(
    ("argv", "blocked", "work"),
    [
        (
            ["bench", "--objective", "mining", "--quick"],
            ["faiss", "torch", "tokenizers"],
            "_bench_mining",
        ),
        (["gan-bench", "--quick", "--no-plot"], ["matplotlib"], "_run_gan_bench"),
    ],
)
def test_cli_requires_only_what_the_command_needs(argv, blocked, work, monkeypatch, tmp_path):
    """Mining skips (and reports) the faiss and torch contenders and needs no corpus;
    ``--no-plot`` needs no matplotlib."""
    for name in blocked:
        monkeypatch.setitem(sys.modules, name, None)
    ran = []
    monkeypatch.setattr(cli, work, lambda args: ran.append(args.command) or 0)
    assert cli.main([*argv, "--cache-dir", str(tmp_path)]) == 0
    assert ran == [argv[0]]


def test_cli_process_exits_non_zero_with_the_hint(tmp_path):
    """``python -m lmobjectives`` (the bare command) in a process without tokenizers."""
    code = f"""
        import runpy
        sys.argv = ["lmobjectives", "--cache-dir", {str(tmp_path)!r}]
        runpy.run_module("lmobjectives", run_name="__main__", alter_sys=True)
    """
    result = _run_python(_block("tokenizers"), code)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith("lmobjectives: error: tokenizers is not installed"), (
        result.stderr
    )
    assert result.stderr.rstrip("\n").endswith(_hint("corpus"))
    assert result.stderr.count("\n") == 1
