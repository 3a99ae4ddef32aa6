"""The typed stub python/vqfast/_io.pyi names exactly what the extension exports."""
from __future__ import annotations

import ast
import os
from pathlib import Path

import vqfast
import vqfast._io as native


def _stub_names():
    path = os.path.join(os.path.dirname(vqfast.__file__), "_io.pyi")
    if not os.path.exists(path):  # an installed wheel without the stub next to the module
        path = os.path.join(os.path.dirname(__file__), "..", "..", "python", "vqfast", "_io.pyi")
    tree = ast.parse(Path(path).read_text())
    top, methods = set(), {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            top.add(node.name)
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and not node.target.id.startswith("_"):
            top.add(node.target.id)
        if isinstance(node, ast.ClassDef):
            methods[node.name] = {n.name for n in node.body if isinstance(n, ast.FunctionDef)}
    return top, methods


def test_stub_matches_extension():
    top, methods = _stub_names()
    exported = {n for n in dir(native) if not n.startswith("_")}
    assert top == exported
    for cls, names in methods.items():
        public = {n for n in names if not n.startswith("_") or n in ("__iter__", "__next__")}
        for name in public:
            assert hasattr(getattr(native, cls), name), f"{cls}.{name} is in the stub but not in the extension"
        actual = {n for n in dir(getattr(native, cls)) if not n.startswith("_")}
        assert actual <= names, f"{cls}: not in the stub: {actual - names}"
