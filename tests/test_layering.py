"""The core stays apart from the experiment layer: no plotting, no argparse, no file formats, no
file I/O.

The core is ``smoothstab/*.py`` (everything outside ``smoothstab/experiments/``). Each core module
is parsed with :mod:`ast`, not grepped: its imports (top-level or inside functions, absolute or
relative, aliased or not) are resolved to module names and followed through other ``smoothstab``
modules, so the whole import closure of the core is checked; its calls are resolved through the
module's import aliases (``np.save`` is ``numpy.save``, ``from torch import save`` is
``torch.save``) and checked against the file-I/O calls below. Two subprocess checks confirm what
a real import loads.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

from helpers import ROOT

PACKAGE = "smoothstab"
EXPERIMENTS = f"{PACKAGE}.experiments"
# ``python -m smoothstab`` runs the command line, so it imports the experiment layer; it is not a
# root of the check, but a core module that imported it would still be caught (it is followed).
ENTRY_POINTS = {f"{PACKAGE}.__main__"}
# ``smoothstab.plot`` draws (matplotlib, imported inside its functions): not core, so not a root
# of the check, and no core module may import it.
PLOTTING = f"{PACKAGE}.plot"

NO_IMPORT = ("matplotlib", "argparse", "csv", "json", "pickle")  # and the experiment layer
BANNED_CALLS = {
    "open": "builtin open()",
    "io.open": "io.open()",
    "os.open": "os.open()",
    "torch.save": "torch.save()",
    "torch.load": "torch.load()",
    "numpy.load": "numpy.load()",
    "json.dump": "json.dump()",
    "json.dumps": "json.dumps()",
    "json.load": "json.load()",
    "json.loads": "json.loads()",
}
BANNED_CALL_PREFIXES = {"numpy.save": "numpy.save*()", "pickle.": "pickle.*()"}
# any method of these names: Path's file access, Figure.savefig
BANNED_METHODS = {
    "write_text",
    "write_bytes",
    "read_text",
    "read_bytes",
    "mkdir",
    "unlink",
    "savefig",
}
DEFAULT_ALIASES = {"np": "numpy"}  # so that ``np.save`` is caught even without its import


# --- the checker --------------------------------------------------------------------------------


def is_banned(module: str, package: str = PACKAGE) -> bool:
    banned = (f"{package}.experiments", f"{package}.plot", *NO_IMPORT)
    return any(module == b or module.startswith(b + ".") for b in banned)


def imports(tree: ast.AST, module: str, is_package: bool) -> list[tuple[int, str, bool]]:
    """``(line, name, surely a module)`` for every import in ``tree``, wherever it is.
    ``from M import n`` yields ``M`` (a module) and ``M.n`` (a submodule or just a name in
    ``M``); relative imports are made absolute against ``module``."""
    package = module if is_package else module.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, True) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join([*parts, base] if base else parts)
            found.append((node.lineno, base, True))
            found += [(node.lineno, f"{base}.{a.name}", False) for a in node.names if a.name != "*"]
    return found


def aliases(tree: ast.AST) -> dict[str, str]:
    """Local name -> qualified name, from the module's imports (``import numpy as np``,
    ``from torch import save``, ``import os.path``)."""
    names = dict(DEFAULT_ALIASES)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.asname:
                    names[a.asname] = a.name
                else:
                    top = a.name.partition(".")[0]
                    names[top] = top
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for a in node.names:
                names[a.asname or a.name] = f"{node.module}.{a.name}"
    return names


def dotted(node: ast.AST) -> str | None:
    """``a.b.c`` for a chain of names and attributes, else None (a call, a subscript ...)."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    return ".".join([node.id, *reversed(parts)])


def file_io(tree: ast.AST) -> list[tuple[int, str]]:
    """``(line, what)`` for every call in ``tree`` that reads or writes files."""
    names = aliases(tree)
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr in BANNED_METHODS:
            found.append((node.lineno, f"calls .{func.attr}()"))
            continue
        name = dotted(func)
        if name is None:
            continue
        head, _, rest = name.partition(".")
        qualified = names.get(head, head) + (f".{rest}" if rest else "")
        if qualified in BANNED_CALLS:
            found.append((node.lineno, f"calls {BANNED_CALLS[qualified]}"))
        for prefix, what in BANNED_CALL_PREFIXES.items():
            if qualified.startswith(prefix):
                found.append((node.lineno, f"calls {what} ({qualified})"))
    return found


def check_source(
    source: str, filename: str, module: str, is_package: bool = False, package: str = PACKAGE
) -> list[str]:
    """Every banned import and file-I/O call in one module's source, as ``file:line: what``."""
    tree = ast.parse(source, filename)
    problems = [
        f"{filename}:{line}: imports {name}"
        for line, name, _ in imports(tree, module, is_package)
        if is_banned(name, package)
    ]
    problems += [f"{filename}:{line}: {what}" for line, what in file_io(tree)]
    return problems


def module_file(name: str, root: Path) -> Path | None:
    """The file of module ``name`` under ``root`` (a package's ``__init__.py``), or None."""
    path = root.joinpath(*name.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def core_modules(root: Path, package: str = PACKAGE) -> list[str]:
    return sorted(
        package if p.stem == "__init__" else f"{package}.{p.stem}"
        for p in (root / package).glob("*.py")
    )


def check_closure(root: Path, package: str = PACKAGE, entry_points=ENTRY_POINTS) -> list[str]:
    """Check every core module and everything it imports from ``package``, transitively. A
    problem found through imports names the chain that reaches it."""
    problems: list[str] = []
    seen: set[str] = set()
    plotting = f"{package}.plot"
    todo = [(m,) for m in core_modules(root, package) if m not in entry_points | {plotting}]
    while todo:
        chain = todo.pop()
        module = chain[-1]
        if module in seen:
            continue
        seen.add(module)
        path = module_file(module, root)
        rel = path.relative_to(root).as_posix()
        via = f" (reached by {' -> '.join(chain)})" if len(chain) > 1 else ""
        source, is_package = path.read_text(), path.name == "__init__.py"
        found = check_source(source, rel, module, is_package, package)
        problems += [p + via for p in found]
        for line, name, surely in imports(ast.parse(source, rel), module, is_package):
            inside = name == package or name.startswith(package + ".")
            if not inside or is_banned(name, package) or name in seen:
                continue
            if module_file(name, root) is not None:
                todo.append((*chain, name))
            elif surely:
                problems.append(f"{rel}:{line}: imports {name}, which is not a module here{via}")
    return problems


# --- the core ---------------------------------------------------------------------------------


def test_core_import_closure_stays_in_the_core_and_does_no_file_io():
    assert len(core_modules(ROOT)) >= 10  # the glob found the core
    problems = check_closure(ROOT)
    assert not problems, "the core must not plot, parse arguments or touch files:\n" + "\n".join(
        problems
    )


# --- the checker can fail -------------------------------------------------------------------

BAD = textwrap.dedent(
    """\
    import json
    import matplotlib.pyplot as plt
    from pathlib import Path
    import numpy
    import torch as T
    from torch import load as tload


    def f(p, obj, fig):
        Path(p).write_text("x")
        with open(p) as f:
            json.dump(obj, f)
        T.save(obj, p)
        tload(p)
        numpy.savez(p, a=1)
        fig.savefig(p)
        p.parent.mkdir()
        from .experiments import cli
        from smoothstab.experiments.models.trainer import fit
        import pickle; pickle.dumps(obj)
    """
)


def test_checker_reports_each_violation_with_its_line():
    problems = check_source(BAD, "bad.py", "smoothstab.bad")
    want = [
        "bad.py:1: imports json",
        "bad.py:2: imports matplotlib.pyplot",
        "bad.py:10: calls .write_text()",
        "bad.py:11: calls builtin open()",
        "bad.py:12: calls json.dump()",
        "bad.py:13: calls torch.save()",
        "bad.py:14: calls torch.load()",
        "bad.py:15: calls numpy.save*() (numpy.savez)",
        "bad.py:16: calls .savefig()",
        "bad.py:17: calls .mkdir()",
        "bad.py:18: imports smoothstab.experiments",
        "bad.py:18: imports smoothstab.experiments.cli",
        "bad.py:19: imports smoothstab.experiments.models.trainer",
        "bad.py:20: imports pickle",
        "bad.py:20: calls pickle.*() (pickle.dumps)",
    ]
    missing = [w for w in want if w not in problems]
    assert not missing, f"not reported: {missing}; reported: {problems}"


def test_checker_passes_clean_code():
    clean = textwrap.dedent(
        """\
        import torch
        from smoothstab.checks import check_input


        def f(x, opened, saver):
            check_input(x)
            opened.append(torch.load_state)  # attributes, not calls
            saver.save(x)  # not torch.save
            return torch.saved(x), x.open_count
        """
    )
    assert check_source(clean, "clean.py", "smoothstab.clean") == []


def test_closure_follows_core_imports_to_a_violation(tmp_path):
    """Modules reached only through imports are checked too, and named with the chain that
    reaches them: the entry point may import the experiment layer, a module that imports the
    entry point may not; a core subpackage is held to the same rules."""
    pkg = tmp_path / "pkg"
    for folder in ("experiments", "util"):
        (pkg / folder).mkdir(parents=True)
    files = {
        "__init__.py": "from pkg import a\n",
        "a.py": "from . import b\nfrom .util import tools\n",
        "b.py": "def f():\n    import matplotlib\n",
        "c.py": "import pkg.__main__\nimport pkg.nothing\n",
        "__main__.py": "from pkg.experiments.cli import main\n",
        "experiments/__init__.py": "",
        "experiments/cli.py": "import argparse\n",
        "util/__init__.py": "",
        "util/tools.py": "import csv\n",
    }
    for name, text in files.items():
        (pkg / name).write_text(text)
    problems = check_closure(tmp_path, "pkg", entry_points={"pkg.__main__"})
    assert "pkg/b.py:2: imports matplotlib" in problems, problems
    want = [
        "pkg/__main__.py:1: imports pkg.experiments.cli (reached by pkg.c -> pkg.__main__)",
        "pkg/util/tools.py:1: imports csv (reached by pkg.a -> pkg.util.tools)",
        "pkg/c.py:2: imports pkg.nothing, which is not a module here",
    ]
    assert not [w for w in want if w not in problems], problems
    assert not [p for p in problems if "experiments/cli.py" in p]  # not core: never a root


# --- what a real import loads -----------------------------------------------------------------


def loaded_after(code: str, prefixes: tuple[str, ...]) -> list[str]:
    """The modules starting with one of ``prefixes`` that a fresh interpreter has loaded after
    running ``code``."""
    probe = (
        f"{code}\nimport sys\nprint(sorted(m for m in sys.modules if m.startswith({prefixes!r})))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT
    )
    return eval(out.stdout.strip().splitlines()[-1])


def test_importing_the_core_pulls_in_neither_matplotlib_nor_the_experiment_layer():
    # (argparse is not checked here: torch itself imports it)
    code = "import smoothstab, smoothstab.bounds, smoothstab.metrics, smoothstab.spectral"
    assert loaded_after(code, ("matplotlib", EXPERIMENTS, f"{PACKAGE}.cli")) == []


def test_plotting_imports_matplotlib_only_when_it_draws():
    """``import smoothstab.plot`` loads no matplotlib; drawing does; and the plotting module
    itself touches no file (it returns figures)."""
    assert loaded_after(f"import {PLOTTING}", ("matplotlib",)) == []
    code = f"import torch, {PLOTTING} as p\np.map_grid({{'a': torch.ones(1, 1, 4, 4)}})"
    assert "matplotlib" in loaded_after(code, ("matplotlib",))
    path = ROOT / "smoothstab" / "plot.py"
    assert file_io(ast.parse(path.read_text(), str(path))) == []


def test_importing_the_core_pulls_in_no_optional_extra():
    """timm, transformers and quantus are extras: the core and interop work without them."""
    code = "import smoothstab, smoothstab.interop, smoothstab.cam"
    assert loaded_after(code, ("timm", "transformers", "quantus")) == []


def test_loading_a_config_pulls_in_no_training_ddp_or_plotting():
    """The config room is what reading a config needs; the models room (trainer, torchrun
    helpers), the stages and the command line stay unloaded. (``torch.distributed`` itself is
    not checked: ``import torch`` loads it.)"""
    code = "import smoothstab.experiments.config.load as c\nc.load_config(None)"
    ours = tuple(f"{EXPERIMENTS}.{m}" for m in ("models", "stages", "pipeline", "plan", "cli"))
    assert loaded_after(code, ("matplotlib", *ours)) == []


# --- the experiment layer's rooms -------------------------------------------------------------

# Each room of the experiment layer and the rooms it may import, besides the core and itself:
# a room imports only rooms below it. The three top modules (pipeline, cli, the package) may
# import any room. Imports inside functions and under ``TYPE_CHECKING`` count like any other.
ROOMS = {
    "io": set(),
    "analysis": set(),
    "config": {"analysis", "io"},
    "rundir": {"analysis", "config", "io"},
    "models": {"analysis", "config", "io", "rundir"},
    "pages": {"analysis", "config", "io", "rundir"},
    "stages": {"analysis", "config", "io", "models", "pages", "rundir"},
    "plan": {"analysis", "config", "io", "models", "pages", "rundir", "stages"},
}
TOP = {"pipeline", "cli", ""}  # "" is the package's __init__


def all_modules(root: Path = ROOT, package: str = PACKAGE) -> dict[str, Path]:
    """Every module of ``package`` under ``root``: dotted name -> file."""
    found = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def import_graph(root: Path = ROOT, package: str = PACKAGE) -> dict[str, set[str]]:
    """Module -> the modules of ``package`` it imports, anywhere in its code (``from M import
    n`` counts as importing ``M.n`` where that is a module, else ``M``)."""
    modules = all_modules(root, package)
    graph = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        found = imports(tree, name, path.name == "__init__.py")
        named = {n for _, n, surely in found if not surely}  # ``from M import n``: M.n
        targets = {n for n in named if n in modules}
        for _, imported, surely in found:  # M itself where no name taken from it is a module
            taken = {n for n in named if n.rpartition(".")[0] == imported}
            if surely and imported in modules and not taken & targets:
                targets.add(imported)
        graph[name] = targets - {name}
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index, low, on_stack, stack, found = {}, {}, set(), [], []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def room_of(module: str) -> str | None:
    """The room of an experiment-layer module (``None`` outside the layer)."""
    if module != EXPERIMENTS and not module.startswith(EXPERIMENTS + "."):
        return None
    rest = module.removeprefix(EXPERIMENTS).lstrip(".")
    return rest.partition(".")[0]


def room_violations(graph: dict[str, set[str]]) -> list[str]:
    bad = []
    for module, targets in sorted(graph.items()):
        room = room_of(module)
        if room is None or room in TOP:
            continue
        for target in sorted(targets):
            other = room_of(target)
            if other is None or other == room:
                continue
            if other in TOP or other not in ROOMS[room]:
                bad.append(f"{module} ({room}/) imports {target} ({other or 'the package'})")
    return bad


def test_the_package_has_no_import_circle():
    found = circles(import_graph())
    assert found == [], "import circles: " + "; ".join(" <-> ".join(c) for c in found)


def test_every_experiment_module_lives_in_a_room():
    loose = [m for m in all_modules() if room_of(m) not in (None, *ROOMS, *TOP)]
    assert loose == [], f"modules outside the rooms: {loose}"
    assert set(ROOMS) == {p.name for p in (ROOT / PACKAGE / "experiments").iterdir()
                          if p.is_dir() and p.name != "__pycache__"}  # fmt: skip


def test_each_room_imports_only_the_rooms_below_it():
    bad = room_violations(import_graph())
    assert bad == [], "\n".join(bad)


def test_stages_do_not_import_each_other():
    graph = import_graph()
    stages = {m for m in graph if room_of(m) == "stages"}
    bad = [f"{m} -> {t}" for m in sorted(stages) for t in sorted(graph[m] & stages)
           if not t.endswith(".stages")]  # fmt: skip
    assert bad == []


def test_the_circle_and_room_checks_can_fail(tmp_path):
    """A planted circle (through an import inside a function) and a room importing upwards are
    found."""
    pkg = tmp_path / "pkg"
    for room in ("experiments/io", "experiments/config", "experiments/stages"):
        (pkg / room).mkdir(parents=True)
        (pkg / room / "__init__.py").write_text("")
    files = {
        "__init__.py": "",
        "experiments/__init__.py": "",
        "experiments/io/files.py": "def f():\n    from pkg.experiments.config import tables\n",
        "experiments/config/tables.py": "from pkg.experiments.io.files import f\n",
        "experiments/stages/a.py": "from pkg.experiments.stages import b\n",
        "experiments/stages/b.py": "x = 1\n",
    }
    for name, text in files.items():
        (pkg / name).write_text(text)
    graph = import_graph(tmp_path, "pkg")
    assert circles(graph) == [["pkg.experiments.config.tables", "pkg.experiments.io.files"]]
    global EXPERIMENTS
    saved, EXPERIMENTS = EXPERIMENTS, "pkg.experiments"
    try:
        bad = room_violations(graph)
    finally:
        EXPERIMENTS = saved
    assert bad == ["pkg.experiments.io.files (io/) imports pkg.experiments.config.tables (config)"]


def test_experiment_layer_imports_no_private_name():
    """A name with a leading underscore belongs to its module: what the experiment layer needs
    from another module is made public and documented where it lives (as
    :func:`.recipe.block_seed`, which the attribute and sanity stages use). Private *modules*
    (``smoothstab._startup``) are not names of another module."""
    found = []
    for path in sorted((ROOT / PACKAGE / "experiments").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not (isinstance(node, ast.ImportFrom) and (node.module or "").startswith(PACKAGE)):
                continue
            folder = ROOT / Path(*node.module.split("."))
            for alias in node.names:
                private = alias.name.startswith("_") and not alias.name.startswith("__")
                if private and not (folder / f"{alias.name}.py").is_file():
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {alias.name}")
    assert found == []
