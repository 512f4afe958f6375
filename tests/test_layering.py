"""The package's rooms import only downward (the order is mtad/__init__.py's map), and no module
resolves names lazily through a module-level ``__getattr__``."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# lowest first: a module may import from its own room and the rooms before it, never after
ROOMS = [("mtad.errors", "mtad.registry", "mtad.paths", "mtad.ranges"), ("mtad.runners",), ("mtad.decoding",), ("baselines",), ("mtad.catalogue",),
         ("mtad.judging",), ("tasks",), ("mtad.job",), ("mtad.report",)]
PACKAGES = ("mtad", "baselines", "tasks")


def room(module: str) -> int | None:
    """The index of ``module``'s room; None for the package root ``mtad`` itself."""
    for i, prefixes in enumerate(ROOMS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return i
    return None


def modules():
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            yield name, path


def imports(tree: ast.AST, module: str):
    """Every module an ``import`` or ``from ... import`` names, at any depth (imports inside
    functions count too: a deferred import is still a dependency)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.level:  # relative: resolve against this module's package
                base = module.split(".")[: -node.level]
                yield ".".join(base + [node.module])
            else:
                yield node.module


def test_every_module_has_a_room():
    orphans = [name for name, _ in modules() if name != "mtad" and room(name) is None]
    assert not orphans, f"modules outside every room (add them to ROOMS and mtad/__init__.py's map): {orphans}"


def test_rooms_import_only_downward():
    upward = []
    for name, path in modules():
        mine = room(name)
        tree = ast.parse(path.read_text())
        for target in imports(tree, name):
            if not target.startswith(PACKAGES):
                continue
            theirs = room(target)
            if name == "mtad":
                upward.append(f"{name} (the package root imports nothing) -> {target}")
            elif theirs is not None and theirs > mine:
                upward.append(f"{name} -> {target}")
    assert not upward, "imports that point up the rooms:\n" + "\n".join(upward)


def test_no_module_resolves_names_lazily():
    lazy = [name for name, path in modules()
            for node in ast.parse(path.read_text()).body
            if isinstance(node, ast.FunctionDef) and node.name == "__getattr__"]
    assert not lazy, f"module-level __getattr__ in {lazy}"


def test_the_check_sees_an_upward_import(tmp_path):
    """Negative control: a decoding module importing the job room is caught."""
    tree = ast.parse("from mtad.job.harness import Job\n")
    found = [t for t in imports(tree, "mtad.decoding.base") if room(t) > room("mtad.decoding.base")]
    assert found == ["mtad.job.harness"]
