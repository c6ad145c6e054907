"""Code outside the engine reaches it through its facade, `sweeps.engine.__all__`, as optax's users reach `optax.*`.

The facade exports objects (`Population`, `make_train_epoch`, ...) and a few public modules (`hparams`,
`metrics`, `compiler`, ...) whose contents are theirs to use, like `optax.schedules`. Every other engine
module (`epoch`, `population`, `structure`, `optimizers`, `lr_range`) is private: it may be split, renamed or
moved without a change outside `sweeps/engine/`. The check reads the source (imports, `sweeps.engine.X`
attribute chains and doctest examples) of every module under sweeps/ outside the engine, benchmarks/,
tests/ and models/.
"""

import ast
import doctest
import types
from pathlib import Path

import pytest

import sweeps.engine

ROOT = Path(__file__).resolve().parents[1]
EXPORTED = frozenset(sweeps.engine.__all__)
PUBLIC_MODULES = frozenset(name for name in EXPORTED if isinstance(getattr(sweeps.engine, name), types.ModuleType))


def outside_files() -> list[Path]:
    """Every .py file that is not the engine's own: sweeps/ (but sweeps/engine/), benchmarks/, tests/, models/."""
    engine = ROOT / "sweeps" / "engine"
    files = [path for folder in ("sweeps", "benchmarks", "tests", "models") for path in (ROOT / folder).rglob("*.py")]
    return sorted(path for path in files if engine not in path.parents)


def _imported_module(module: str, names: list[str]) -> list[tuple[str, str]]:
    """(name, what is wrong) for `from <module> import <names>`, where module is sweeps.engine or under it."""
    parts = module.split(".")
    if len(parts) == 2:
        return [(name, f"sweeps.engine does not export {name!r}") for name in names if name not in EXPORTED]
    if parts[2] not in PUBLIC_MODULES or len(parts) > 3:
        private = ".".join(parts[:3])
        return [(name, f"{private} is private to the engine; import {name!r} from sweeps.engine") for name in names]
    return [(name, f"{module}.{name} is private (a leading underscore)") for name in names if name.startswith("_")]


def violations(source: str, where: str, first_line: int = 1) -> list[str]:
    """'where:line: name: what is wrong' for every reach past the facade in `source` (Python, not executed)."""
    tree = ast.parse(source)
    found: list[tuple[int, str, str]] = []
    engine_names = set()  # local names bound to the sweeps.engine module itself
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [alias.name for alias in node.names]
            if node.module == "sweeps":
                engine_names.update(alias.asname or "engine" for alias in node.names if alias.name == "engine")
            elif node.module == "sweeps.engine" or node.module.startswith("sweeps.engine."):
                found += [(node.lineno, name, why) for name, why in _imported_module(node.module, names)]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "sweeps.engine" and alias.asname:
                    engine_names.add(alias.asname)
                elif alias.name.startswith("sweeps.engine."):
                    sub = alias.name.split(".")
                    if sub[2] not in PUBLIC_MODULES or len(sub) > 3:
                        why = f"sweeps.engine.{sub[2]} is private to the engine; import from sweeps.engine"
                        found.append((node.lineno, alias.name, why))
        elif isinstance(node, ast.Attribute):
            value = node.value
            through_sweeps = (
                isinstance(value, ast.Attribute)
                and value.attr == "engine"
                and isinstance(value.value, ast.Name)
                and value.value.id == "sweeps"
            )
            through_alias = isinstance(value, ast.Name) and value.id in engine_names
            exported = node.attr in EXPORTED or node.attr.startswith("__")  # __all__, __file__: the module's own
            if (through_sweeps or through_alias) and not exported:
                found.append((node.lineno, node.attr, f"sweeps.engine does not export {node.attr!r}"))
    return [f"{where}:{first_line + line - 1}: {name}: {why}" for line, name, why in sorted(found)]


def doctest_examples(tree: ast.Module) -> list[tuple[int, str]]:
    """(line in the file, source) of every doctest example in the module's docstrings."""
    out = []
    parser = doctest.DocTestParser()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                text = body[0].value.value
                if isinstance(text, str):
                    for example in parser.get_examples(text):
                        out.append((body[0].lineno + example.lineno, example.source))
    return out


def file_violations(path: Path) -> list[str]:
    where = str(path.relative_to(ROOT))
    source = path.read_text()
    found = violations(source, where)
    for line, example in doctest_examples(ast.parse(source)):
        try:
            found += violations(example, where, first_line=line)
        except SyntaxError:
            pass  # a doctest of output or of a shell line, not Python to import from
    return found


def test_the_facade_exports_what_it_names():
    missing = [name for name in sweeps.engine.__all__ if not hasattr(sweeps.engine, name)]
    assert not missing, f"sweeps.engine.__all__ names {missing}, which sweeps.engine does not define"
    assert len(EXPORTED) == len(sweeps.engine.__all__), "sweeps.engine.__all__ names something twice"
    assert {"hparams", "metrics", "compiler"} <= PUBLIC_MODULES and "epoch" not in PUBLIC_MODULES


@pytest.mark.parametrize(
    ("source", "name"),
    [
        ("from sweeps.engine.epoch import Split", "Split"),
        ("from sweeps.engine import train_epoch", "train_epoch"),
        ("from sweeps.engine.hparams import _SPECS", "_SPECS"),
        ("import sweeps.engine.population as p", "sweeps.engine.population"),
        ("import sweeps\nsweeps.engine.epoch.train_epoch", "epoch"),
        ("from sweeps import engine\nengine.structure.flax_layout", "structure"),
        ("import sweeps.engine as eng\neng.minibatch_step", "minibatch_step"),
    ],
)
def test_a_reach_past_the_facade_is_named_with_its_line(source, name):
    (found,) = violations(source, "x.py")
    assert found.startswith(f"x.py:{source.count(chr(10)) + 1}: {name}: "), found


def test_facade_imports_pass():
    source = (
        "import sweeps\nfrom sweeps import engine\n"
        "from sweeps.engine import Population, Split, hparams, make_train_epoch\n"
        "from sweeps.engine.hparams import HPARAMS\nfrom sweeps.engine.metrics import direction\n"
        "engine.Split\nsweeps.engine.hparams.resolve\n"
    )
    assert violations(source, "x.py") == []


def test_code_outside_the_engine_imports_only_what_the_facade_exports():
    found = [line for path in outside_files() for line in file_violations(path)]
    assert not found, "reaches past sweeps.engine.__all__:\n" + "\n".join(found)


def test_no_library_module_is_named_like_a_test_file():
    """pytest collects `test_*.py` and `*_test.py` as tests (its default `python_files`), and a reader takes them
    for tests: a module of the library is named by what it holds (the range test's program is `lr_range.py`)."""
    named = [
        str(path.relative_to(ROOT))
        for folder in ("sweeps", "models")
        for path in (ROOT / folder).rglob("*.py")
        if path.name.startswith("test_") or path.stem.endswith("_test")
    ]
    assert not named, f"library modules named like test files: {named}"
