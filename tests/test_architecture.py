"""The package layout stays true: imports flow one way, no cycles, no private names.

The pipeline's stages, lowest first (docs/architecture.md):
``errors -> io -> protocol -> engine -> results -> cli``, with ``synth`` and ``models`` as
side branches that may import ``io`` and ``protocol``. A module may import its own stage and
the stages this table allows, nothing above. Lazy (function-level) imports of the package
are allowed only in ``cli/`` and the top-level ``__init__``, each marked with a ``lazy``
comment on its line or the line above.

Every rule is checked on the source tree by reading the imports with :mod:`ast`; the first
tests also check that the checker itself catches a cycle, an upward import and a private
name on small hand-made module graphs.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "vireid_bench"

ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "io": {"errors"},
    "protocol": {"errors", "io"},
    "engine": {"errors", "io", "protocol"},
    "synth": {"errors", "io", "protocol"},
    "models": {"errors", "io", "protocol"},
    "results": {"errors", "io", "protocol", "engine"},
    "cli": {"errors", "io", "protocol", "engine", "results", "synth", "models"},
}
"""Stage -> the stages its modules may import (besides their own)."""

COMPAT = {"vireid_bench.dump", "vireid_bench.scoring", "vireid_bench.datasets"}
"""Deprecated aliases of moved modules (one release): they import their new home."""

TOP = "api"
"""The stage of ``vireid_bench/__init__.py``: the public API, which may import anything."""


@dataclass(frozen=True)
class Import:
    """One import of a package module found in a source file."""

    source: str  # importing module, dotted
    target: str  # imported module, dotted
    names: tuple[str, ...]  # names taken with ``from target import ...``
    line: int
    lazy: bool  # inside a function or method
    marked: bool  # a comment with "lazy" on its line or the line above


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def stage_of(module: str) -> str:
    parts = module.split(".")
    if module in COMPAT or len(parts) == 1:
        return TOP
    return parts[1]


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")
    if not is_package:
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def read_imports(
    source_text: str, module: str, is_package: bool, modules: set[str]
) -> list[Import]:
    """Every import of a ``vireid_bench`` module in one source file."""
    tree = ast.parse(source_text)
    lines = source_text.splitlines()
    found: list[Import] = []

    def marked(lineno: int) -> bool:
        """A ``lazy`` comment on the line, or above the block of imports it belongs to."""
        if "lazy" in lines[lineno - 1].partition("#")[2]:
            return True
        k = lineno - 2
        while k >= 0 and (
            lines[k].strip().startswith(("from ", "import ", ")"))
            or lines[k].startswith(" " * 8)
            and not lines[k].strip().startswith("#")
            and lines[k].strip().endswith(",")
        ):
            k -= 1
        return k >= 0 and lines[k].strip().startswith("# lazy")

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                continue  # typing-only imports are not executed
            if isinstance(child, ast.Import):
                for alias in child.names:
                    if alias.name.split(".")[0] == "vireid_bench":
                        found.append(
                            Import(
                                module, alias.name, (), child.lineno, inner, marked(child.lineno)
                            )
                        )
            elif isinstance(child, ast.ImportFrom):
                target = _resolve(module, is_package, child)
                if target.split(".")[0] != "vireid_bench":
                    continue
                names = tuple(alias.name for alias in child.names)
                # ``from package import submodule`` imports the submodule
                subs = [f"{target}.{n}" for n in names if f"{target}.{n}" in modules]
                for sub in subs:
                    found.append(Import(module, sub, (), child.lineno, inner, marked(child.lineno)))
                rest = tuple(n for n in names if f"{target}.{n}" not in modules)
                if rest or not subs:
                    found.append(
                        Import(module, target, rest, child.lineno, inner, marked(child.lineno))
                    )
            visit(child, inner)

    visit(tree, False)
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def upward_imports(imports: list[Import]) -> list[str]:
    problems = []
    for imp in imports:
        src, dst = stage_of(imp.source), stage_of(imp.target)
        version_only = imp.target == "vireid_bench" and imp.names == ("__version__",)
        if src in (TOP, dst) or version_only:
            continue
        if dst == TOP or dst not in ALLOWED.get(src, set()):
            problems.append(f"{imp.source}:{imp.line} imports {imp.target} ({src} -> {dst})")
    return problems


def private_names(imports: list[Import]) -> list[str]:
    problems = []
    for imp in imports:
        private = [n for n in imp.names if n.startswith("_") and not n.startswith("__")]
        private_module = any(
            part.startswith("_") and not part.startswith("__") for part in imp.target.split(".")
        )
        if private or private_module:
            problems.append(f"{imp.source}:{imp.line} takes private {private or imp.target}")
    return problems


def unmarked_lazy_imports(imports: list[Import]) -> list[str]:
    problems = []
    for imp in imports:
        if not imp.lazy:
            continue
        stage = stage_of(imp.source)
        if stage not in ("cli", TOP):
            problems.append(f"{imp.source}:{imp.line} imports {imp.target} inside a function")
        elif not imp.marked:
            problems.append(f"{imp.source}:{imp.line} lazy import of {imp.target} without '# lazy'")
    return problems


def cycles(imports: list[Import], modules: set[str]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for imp in imports:
        if imp.target in modules and imp.target != imp.source:
            graph[imp.source].add(imp.target)
        # importing a.b.c runs a/__init__ and a.b/__init__ too: count those edges
        parts = imp.target.split(".")
        for k in range(2, len(parts)):
            parent = ".".join(parts[:k])
            if (
                parent in modules
                and not imp.source.startswith(parent + ".")
                and parent != imp.source
            ):
                graph[imp.source].add(parent)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def strong(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                strong(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            strong(node)
    return found


def package_imports() -> tuple[list[Import], set[str]]:
    files = sorted(PACKAGE.rglob("*.py"))
    modules = {module_name(f, PACKAGE) for f in files}
    imports: list[Import] = []
    for f in files:
        imports += read_imports(
            f.read_text(encoding="utf-8"), module_name(f, PACKAGE), f.name == "__init__.py", modules
        )
    return imports, modules


# --------------------------------------------------------------- the checker catches faults


def _fake(sources: dict[str, str]) -> tuple[list[Import], set[str]]:
    modules = set(sources)
    imports: list[Import] = []
    for name, text in sources.items():
        imports += read_imports(text, name, False, modules)
    return imports, modules


def test_checker_finds_a_cycle():
    imports, modules = _fake(
        {
            "vireid_bench.engine.a": "from vireid_bench.engine.b import x\n",
            "vireid_bench.engine.b": "def f():\n    from vireid_bench.engine.a import y\n",
        }
    )
    assert cycles(imports, modules) == [["vireid_bench.engine.a", "vireid_bench.engine.b"]]


def test_checker_finds_an_upward_import_also_when_lazy():
    imports, _ = _fake(
        {
            "vireid_bench.io.dump": "def f():\n    from vireid_bench.engine.scoring import g\n",
            "vireid_bench.engine.scoring": "",
        }
    )
    assert upward_imports(imports) == [
        "vireid_bench.io.dump:2 imports vireid_bench.engine.scoring (io -> engine)"
    ]
    assert unmarked_lazy_imports(imports)  # and lazy outside the command line


def test_checker_finds_private_names_and_unmarked_lazy_imports():
    imports, _ = _fake(
        {
            "vireid_bench.cli.a": (
                "from vireid_bench.cli.b import _helper\n"
                "def f():\n    from vireid_bench.engine.c import g\n"
                "def h():\n    # lazy: keeps --help fast\n    from vireid_bench.engine.c import g\n"
            ),
            "vireid_bench.cli.b": "",
            "vireid_bench.engine.c": "",
        }
    )
    assert private_names(imports) == ["vireid_bench.cli.a:1 takes private ['_helper']"]
    assert unmarked_lazy_imports(imports) == [
        "vireid_bench.cli.a:3 lazy import of vireid_bench.engine.c without '# lazy'"
    ]


# --------------------------------------------------------------------- the package itself


@pytest.fixture(scope="module")
def package():
    return package_imports()


def test_every_module_belongs_to_a_stage(package):
    _, modules = package
    stages = {stage_of(m) for m in modules}
    assert stages <= set(ALLOWED) | {TOP}, stages - set(ALLOWED) - {TOP}


def test_no_import_cycles(package):
    imports, modules = package
    assert cycles(imports, modules) == []


def test_imports_flow_down_the_pipeline(package):
    imports, _ = package
    assert upward_imports(imports) == []


def test_no_private_names_across_modules(package):
    imports, _ = package
    assert private_names(imports) == []


def test_lazy_imports_only_in_the_command_line_and_marked(package):
    imports, _ = package
    assert unmarked_lazy_imports(imports) == []


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("vireid_bench.dump", "vireid_bench.io.dump"),
        ("vireid_bench.scoring", "vireid_bench.engine.scoring"),
        ("vireid_bench.datasets", "vireid_bench.protocol.datasets"),
    ],
)
def test_old_import_paths_still_work_with_a_deprecation_warning(old, new):
    import importlib
    import subprocess
    import sys

    code = (
        "import warnings, importlib\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        f"    old = importlib.import_module({old!r})\n"
        f"assert old is importlib.import_module({new!r})\n"
        "assert any(issubclass(w.category, DeprecationWarning) for w in caught)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    assert importlib.import_module(new)


def test_public_api_names_resolve():
    import vireid_bench
    from vireid_bench.io.dump import load_dump, write_dump

    assert vireid_bench.load_dump is load_dump
    assert vireid_bench.write_dump is write_dump
    for name in ("score", "evaluate", "resolve_presets", "builtin_presets"):
        assert callable(getattr(vireid_bench, name))


def test_the_command_line_imports_no_heavy_library():
    """``vireid-bench --help`` loads click and the package's light modules only."""
    import subprocess
    import sys

    heavy = ("numpy", "numba", "h5py", "pandas", "scipy", "torch", "dask", "matplotlib")
    code = (
        "import sys, vireid_bench.cli\n"
        f"loaded = [m for m in {heavy!r} if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
