"""No import cycles inside the package, between modules and between folders, counting imports
inside functions too.

An import inside a function still runs, later; a cycle through one works only as long as nobody
moves it to the top of its module. The graph is read from the source with `ast` (nothing is
imported): every `import ragvqa.x` / `from ragvqa.x import y` / relative import, at module level
or inside a function, is an edge to module `ragvqa.x`, or to `ragvqa.x.y` when that is a module.
Imports under `if TYPE_CHECKING:` never run and are left out, and so are imports of a module's
own parent packages (`from ragvqa import __version__` in `ragvqa.index.build`): Python has
initialised every parent package before the module's first line runs, so such an edge is there
for every module whether written or not, and a package `__init__` that imports its submodules
(eagerly or, PEP 562, on attribute access) is no cycle.

Between folders (`test_no_import_cycles_between_folders`): the same edges, each module counted
as its folder, the top-level subpackage of ragvqa that holds it (`ragvqa.kb.store` is
`ragvqa.kb`, the folder's `__init__` too). A module at the package root (`ragvqa.io`,
`ragvqa.pipeline`) and the root package itself are each a node of their own, not one `ragvqa`
node: the root holds both the bottom layer (types, errors, io) that every folder imports and the
top (pipeline, components) that imports most folders, so as one node it would be on a cycle with
every folder and the rule would say nothing. Counted apart, a folder that imports
`ragvqa.pipeline` while `ragvqa.pipeline` imports it still makes a cycle. A cycle made of root
modules only is the module test's to report, not this one's.
"""

from __future__ import annotations

import ast
import importlib
import itertools
import re
from pathlib import Path

import ragvqa

PACKAGE = Path(ragvqa.__file__).parent


def module_files() -> dict[str, Path]:
    """Every module of the package by dotted name (a package is its `__init__.py`)."""
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def _type_checking_only(node: ast.If) -> bool:
    test = node.test
    name = test.id if isinstance(test, ast.Name) else getattr(test, "attr", None)
    return name == "TYPE_CHECKING"


def _imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    found: list[ast.Import | ast.ImportFrom] = []
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _type_checking_only(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        stack.extend(ast.iter_child_nodes(node))
    return found


def imported_modules(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package's modules that module `name` imports, anywhere in its source."""
    is_package = path.name == "__init__.py"
    targets: set[str] = set()
    for node in _imports(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
            continue
        base = node.module or ""
        if node.level:  # relative: from the package holding this module
            package = name.split(".") if is_package else name.split(".")[:-1]
            package = package[: len(package) - (node.level - 1)]
            base = ".".join(package + ([base] if base else []))
        for alias in node.names:
            child = f"{base}.{alias.name}"
            targets.add(child if child in modules else base)
    return {t for t in targets if t in modules and t != name and not name.startswith(f"{t}.")}


def import_graph() -> dict[str, set[str]]:
    modules = module_files()
    return {name: imported_modules(name, path, modules) for name, path in modules.items()}


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (as a path that ends where it starts) per strongly connected component."""
    return [_cycle_through(graph, set(c), c[0]) for c in strongly_connected(graph)]


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node, each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def connect(v: str) -> None:  # Tarjan; the package is small enough for recursion
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
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
                components.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return components


def _cycle_through(graph: dict[str, set[str]], component: set[str], start: str) -> list[str]:
    """The shortest path start -> ... -> start inside a strongly connected component."""
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for v in frontier:
            for w in sorted(graph[v] & component):
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [*reversed(path), start]
                if w not in previous:
                    previous[w] = v
                    following.append(w)
        frontier = following
    raise AssertionError(f"{start} is on no cycle")  # pragma: no cover


Edge = tuple[str, str]
# Back-edges between folders whose fix is in files of other owners (issue 24), left out of the
# folder graph until they are gone; each must still exist (the list only shrinks).
PENDING: dict[Edge, str] = {}


def folder_of(name: str, folders: set[str]) -> str:
    """The node a module counts as: its top-level subpackage, or itself at the package root."""
    top = ".".join(name.split(".")[:2])
    return top if top in folders else name


def folder_graph(
    graph: dict[str, set[str]], modules: dict[str, Path]
) -> tuple[dict[str, set[str]], dict[Edge, list[Edge]]]:
    """The graph between folders (see the module's docstring), and for each of its edges the
    module imports that make it."""
    folders = {
        name
        for name, path in modules.items()
        if name.count(".") == 1 and path.name == "__init__.py"
    }
    nodes: dict[str, set[str]] = {folder_of(name, folders): set() for name in graph}
    why: dict[Edge, list[Edge]] = {}
    for name, targets in graph.items():
        a = folder_of(name, folders)
        for target in sorted(targets):
            b = folder_of(target, folders)
            if a != b:
                nodes[a].add(b)
                why.setdefault((a, b), []).append((name, target))
    return nodes, why


def folder_cycles(graph: dict[str, set[str]], folders: set[str]) -> list[list[str]]:
    """One cycle per strongly connected component that holds a folder (those of root modules
    only are the module test's), starting at its first folder."""
    cycles = []
    for component in strongly_connected(graph):
        inside = [node for node in component if node in folders]
        if inside:
            cycles.append(_cycle_through(graph, set(component), inside[0]))
    return cycles


def test_the_graph_sees_imports_inside_functions_and_relative_ones(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    for name in ("__init__", "a", "b", "sub/__init__", "sub/c"):
        (pkg / f"{name}.py").write_text("")
    modules = {"pkg": pkg / "__init__.py", "pkg.a": pkg / "a.py", "pkg.b": pkg / "b.py"}
    modules |= {"pkg.sub": pkg / "sub/__init__.py", "pkg.sub.c": pkg / "sub/c.py"}
    (pkg / "a.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "from pkg.sub import c\n"
        "if TYPE_CHECKING:\n    import pkg.b\n"
        "def f():\n    from pkg.b import thing\n"
    )
    (pkg / "sub/c.py").write_text("from .. import a\nfrom . import other\nimport pkg.b\n")
    (pkg / "b.py").write_text("import pkg\nfrom pkg import sub\n")
    assert imported_modules("pkg.a", pkg / "a.py", modules) == {"pkg.sub.c", "pkg.b"}
    assert imported_modules("pkg.sub.c", pkg / "sub/c.py", modules) == {"pkg.a", "pkg.b"}
    assert imported_modules("pkg.b", pkg / "b.py", modules) == {"pkg.sub"}  # not its parent
    graph = {"x": {"y"}, "y": {"z"}, "z": {"x"}, "w": {"x"}}
    assert find_cycles(graph) == [["x", "y", "z", "x"]]
    assert find_cycles({"x": {"y"}, "y": set()}) == []


def test_no_import_cycles():
    cycles = find_cycles(import_graph())
    assert not cycles, "import cycles (imports inside functions count):\n" + "\n".join(
        " -> ".join(cycle) for cycle in cycles
    )


def test_the_folder_graph_counts_folders_and_root_modules(tmp_path):
    pkg = tmp_path / "pkg"
    names = ("__init__", "io", "mid", "top", "a/__init__", "a/x", "a/y", "b/__init__", "b/z")
    modules = {}
    for name in names:
        (pkg / name).parent.mkdir(parents=True, exist_ok=True)
        (pkg / f"{name}.py").write_text("")
        dotted = ".".join(["pkg", *name.split("/")]).removesuffix(".__init__")
        modules[dotted] = pkg / f"{name}.py"
    graph = {
        "pkg": set(),
        "pkg.io": set(),
        "pkg.mid": set(),
        "pkg.top": {"pkg.a.x", "pkg.b"},  # the top of the root imports both folders
        "pkg.a": {"pkg.a.x"},  # inside a folder: no edge
        "pkg.a.x": {"pkg.io", "pkg.b.z"},
        "pkg.a.y": {"pkg.io"},
        "pkg.b": set(),
        "pkg.b.z": {"pkg.io"},
    }
    nodes, why = folder_graph(graph, modules)
    assert nodes == {
        "pkg": set(),
        "pkg.io": set(),
        "pkg.mid": set(),
        "pkg.top": {"pkg.a", "pkg.b"},
        "pkg.a": {"pkg.io", "pkg.b"},
        "pkg.b": {"pkg.io"},
    }
    assert why[("pkg.a", "pkg.b")] == [("pkg.a.x", "pkg.b.z")]
    assert folder_cycles(nodes, {"pkg.a", "pkg.b"}) == []
    graph["pkg.b.z"].add("pkg.top")  # b -> top -> a -> b: a cycle through a root module
    nodes, _ = folder_graph(graph, modules)
    assert folder_cycles(nodes, {"pkg.a", "pkg.b"}) == [["pkg.a", "pkg.b", "pkg.top", "pkg.a"]]
    graph["pkg.b.z"].discard("pkg.top")
    graph["pkg.top"].add("pkg.mid")  # top <-> mid, root modules only: the module test's
    graph["pkg.mid"].add("pkg.top")
    nodes, _ = folder_graph(graph, modules)
    assert find_cycles(nodes) == [["pkg.mid", "pkg.top", "pkg.mid"]]
    assert folder_cycles(nodes, {"pkg.a", "pkg.b"}) == []


def test_no_import_cycles_between_folders():
    modules = module_files()
    graph = import_graph()
    pending = [edge for edge in PENDING if edge[1] in graph.get(edge[0], set())]
    gone = sorted(set(PENDING) - set(pending))
    assert not gone, f"back-edges fixed, remove them from PENDING: {gone}"
    for source, target in pending:
        graph[source] = graph[source] - {target}
    nodes, why = folder_graph(graph, modules)
    folders = {n for n in nodes if modules[n].name == "__init__.py" and n.count(".") == 1}
    cycles = folder_cycles(nodes, folders)
    lines = [
        " -> ".join(cycle)
        + "".join(
            f"\n    {a} -> {b}: " + ", ".join(f"{x} imports {y}" for x, y in why[(a, b)][:3])
            for a, b in itertools.pairwise(cycle)
        )
        for cycle in cycles
    ]
    assert not cycles, "import cycles between folders (imports inside functions count):\n" + (
        "\n".join(lines)
    )


# Old module paths kept as re-exports after a move (issue 24): the download manager left `data/`
# for `fetch/`, and the readers' package `generate/` became `readers/`.
MOVED = {
    **{
        f"ragvqa.data.{name}": f"ragvqa.fetch.{name}"
        for name in (
            *("catalogue", "catalogue_fields", "fetch", "fetch_hub", "fetch_pypi"),
            *("gguf", "landing", "verify"),
        )
    },
    "ragvqa.generate": "ragvqa.readers",
    **{
        f"ragvqa.generate.{name}": f"ragvqa.readers.{name}"
        for name in ("base", "context", "hf_backend", "openai_backend", "vllm_backend")
    },
}
OLD_PATH = re.compile(r"\b(" + "|".join(re.escape(old) for old in MOVED) + r")\b")


def test_only_the_shims_use_the_old_module_paths():
    """Inside ragvqa/, an old path is imported, or named in a "module:attr" string or a
    docstring, by its own shim only: the code reads the moved modules where they now live."""
    modules = module_files()
    assert set(MOVED) <= set(modules), "a shim is missing"
    graph = import_graph()
    found = {}
    for name, path in modules.items():
        if name in MOVED:
            continue
        imports = graph[name] & set(MOVED)
        named = set(OLD_PATH.findall(path.read_text(encoding="utf-8")))
        if imports or named:
            found[name] = sorted(imports | named)
    assert found == {}


def test_the_shims_re_export_the_moved_objects():
    """Each shim gives, under every name it exports, the very object of the moved module (so a
    class patched through either path is the same class), and the readers' old class names
    are aliases of the new ones."""
    for old, new in MOVED.items():
        shim, moved = importlib.import_module(old), importlib.import_module(new)
        for name in getattr(shim, "__all__", []):
            assert getattr(shim, name) is getattr(moved, name), f"{old}.{name}"
    from ragvqa.generate.hf_backend import TransformersGenerator
    from ragvqa.generate.openai_backend import OpenAIGenerator
    from ragvqa.generate.vllm_backend import VLLMGenerator
    from ragvqa.readers.hf_backend import TransformersReader
    from ragvqa.readers.openai_backend import OpenAIReader
    from ragvqa.readers.vllm_backend import VLLMReader

    assert VLLMGenerator is VLLMReader and OpenAIGenerator is OpenAIReader
    assert TransformersGenerator is TransformersReader
