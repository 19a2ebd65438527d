"""The core and the CLI import no ML framework (`--help` stays fast because of it); no module imports itself
through a circle."""

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import xpubench

BLOCKED = ["tensorflow", "keras", "onnxruntime", "ai_edge_litert", "onnx", "torch", "openvino"]

BLOCKER = textwrap.dedent(
    f"""
    import sys
    class Block:
        def find_spec(self, name, path=None, target=None):
            if name.split('.')[0] in {BLOCKED!r}:
                raise ImportError('blocked for this test: ' + name)
    sys.meta_path.insert(0, Block())
    """
)


def test_core_and_cli_import_with_frameworks_unimportable():
    code = BLOCKER + textwrap.dedent(
        """
        import xpubench.core, xpubench.core.measure, xpubench.core.stats, xpubench.core.cell, xpubench.cli
        import xpubench.backends, xpubench.backends.base, xpubench.store, xpubench.run.session
        for name in ('tensorflow', 'onnxruntime'):
            try:
                __import__(name)
            except ImportError:
                pass
            else:
                raise SystemExit('blocker failed for ' + name)
        print('ok')
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_help_runs_with_frameworks_unimportable():
    code = BLOCKER + "from xpubench.cli import main\nraise SystemExit(main(['--help']))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "run" in out.stdout and "devices" in out.stdout


def test_help_imports_no_heavy_module():
    heavy = ("numpy", "scipy", "sklearn", *BLOCKED)
    code = textwrap.dedent(
        f"""
        import sys
        from xpubench.cli import main
        try:
            main(['--help'])
        except SystemExit:
            pass
        print(sorted({{m.split('.')[0] for m in sys.modules}} & set({heavy!r})))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout + out.stderr


def import_graph(package: Path) -> dict[str, set[str]]:
    """Module -> the modules of the package it imports (at the top or inside a function), from the source.
    Imports under `if TYPE_CHECKING:` are left out: they name types for annotations and never run."""
    modules: dict[str, tuple[Path, bool]] = {}
    for path in package.rglob("*.py"):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        modules[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    graph: dict[str, set[str]] = {}
    for name, (path, is_package) in modules.items():
        here = name if is_package else name.rpartition(".")[0]
        edges = set()
        tree = ast.parse(path.read_text())
        typing_only = {
            id(inner)
            for node in ast.walk(tree)
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
            for inner in ast.walk(node)
        }
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            if isinstance(node, ast.Import):
                edges |= {alias.name for alias in node.names if alias.name in modules}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parent = here.split(".")[: len(here.split(".")) - node.level + 1]
                    base = ".".join([*parent, *([node.module] if node.module else [])])
                for alias in node.names:
                    target = f"{base}.{alias.name}"
                    edges.add(target if target in modules else base)
        graph[name] = {e for e in edges if e in modules and e != name}
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan), each a circle of imports."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_import_graph_has_no_circle():
    graph = import_graph(Path(xpubench.__file__).parent)
    assert "xpubench.run.session" in graph and "xpubench.run.sweep" in graph["xpubench.run.session"]
    assert circles(graph) == []


def test_the_circle_finder_finds_a_circle():
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


# Arrows of the architecture that must never exist (DESIGN.md): (importer prefix, imported prefix).
FORBIDDEN = (
    ("xpubench.core", "xpubench."),  # the core imports nothing outside itself
    ("xpubench.store", "xpubench.backends"),
    ("xpubench.report", "xpubench.backends"),
    ("xpubench.backends", "xpubench.cli"),
    ("xpubench.run", "xpubench.cli"),
    ("xpubench.run", "xpubench.cluster"),  # the CLI or the API picks the launcher and passes it in
)


def test_no_forbidden_arrow():
    graph = import_graph(Path(xpubench.__file__).parent)
    wrong = [
        f"{source} -> {target}"
        for source, targets in graph.items()
        for target in targets
        for importer, imported in FORBIDDEN
        if (source == importer or source.startswith(importer + "."))
        and target.startswith(imported) and not target.startswith(importer)
    ]
    assert wrong == []
