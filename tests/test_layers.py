"""Imports run one way. An AST walk of python/vqfast (lazy imports inside functions included) fails on any import
cycle and on any import against the layer order:

    errors ← kernels ← ops ← quantize ← nn ← losses, models ← data ← eval ← train ← tools, stylize, plot
    errors ← loaders (pure-Python references) ← io (Rust loaders) ← data
    inside train: config ← engine ← families ← train/__init__, __main__
    ``vqfast.eval.__main__`` (the CLI, which rebuilds models with the train families) is a tools-layer module.

``losses`` and ``models`` never import each other; the engine imports no family and no registry."""
import ast
from pathlib import Path

import vqfast

ROOT = Path(vqfast.__file__).resolve().parent
LAYERS = {"errors": 0, "kernels": 1, "loaders": 1, "io": 2, "ops": 2, "quantize": 3, "nn": 4, "losses": 5, "models": 5,
          "data": 6, "eval": 7, "train": 8, "tools": 9, "stylize": 9, "plot": 9, "stargan_sample": 9}
MODULE_LAYERS = {"vqfast.eval.__main__": ("tools", LAYERS["tools"])}
"""Modules whose layer is not their package's."""
TRAIN_LAYERS = {"config": 0, "engine": 1, "families": 2, "__main__": 3, "": 3}


def _modules() -> dict[str, Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = ("vqfast", *path.relative_to(ROOT).with_suffix("").parts)
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """vqfast modules ``name`` imports (anywhere in the file), resolved to the closest existing module."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(package[:len(package) - node.level + 1] + ([node.module] if node.module else [])) \
                if node.level else (node.module or "")
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target.startswith("vqfast.") and target != name and not name.startswith(target + "."):
                found.add(target)
    return found


MODULES = _modules()
GRAPH = {name: _imports(name, path, MODULES) for name, path in MODULES.items()}


def _layer(module: str) -> tuple[str, int]:
    if module in MODULE_LAYERS:
        return MODULE_LAYERS[module]
    top = module.split(".")[1] if "." in module else ""
    return top, LAYERS.get(top, -1)


def test_every_top_level_package_has_a_layer():
    tops = {m.split(".")[1] for m in GRAPH if "." in m and not m.split(".")[1].startswith("_")}
    assert tops <= set(LAYERS), sorted(tops - set(LAYERS))


def test_imports_follow_the_layer_order():
    wrong = []
    for a, targets in GRAPH.items():
        ta, la = _layer(a)
        for b in targets:
            tb, lb = _layer(b)
            if ta != tb and not la > lb:
                wrong.append(f"{a} -> {b}")
            if ta == tb == "train":
                sa, sb = (m.split(".")[2] if m.count(".") >= 2 else "" for m in (a, b))
                if sa != sb and not TRAIN_LAYERS[sa] > TRAIN_LAYERS[sb]:
                    wrong.append(f"{a} -> {b}")
    assert not wrong, "imports against the layer order:\n" + "\n".join(sorted(wrong))


def test_only_the_registry_imports_every_family():
    families = {m.split(".")[3] for m in GRAPH if m.startswith("vqfast.train.families.") and m.count(".") >= 3
                and not m.endswith((".base",))} - {"base"}
    for module, targets in GRAPH.items():
        reached = {t.split(".")[3] for t in targets if t.startswith("vqfast.train.families.") and t.count(".") >= 3}
        if module != "vqfast.train.families":  # (vqfast.stylize may import QuantArt's builders)
            assert reached != families, f"{module} imports every family"


def test_no_import_cycles():
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(v):  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in GRAPH[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in sorted(GRAPH):
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"
