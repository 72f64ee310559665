"""Imports run one way: every module under streamapp/ imports only from its own layer or below.

Layers, lowest first (a module's layer is that of its longest prefix in ``LAYERS``):
records ← names, errors ← settings ← codecs, normalize, clients, … ← feeds, simulator, the
normalizer, stack, … ← commands ← cli; the Faust agents (``agents/``, beside the package) sit on
top: nothing in streamapp imports them (the app finds them through its autodiscover list).
Read from the source (ast), nothing imported.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

LAYERS: dict[str, int] = {
    # 0: the Avro records, beside the package
    "records": 0,
    # 1: names declared once, and what everything may raise or read from the wheel
    "streamapp.exchanges": 1, "streamapp.topics": 1, "streamapp.tables": 1, "streamapp.groups": 1,
    "streamapp.headers": 1, "streamapp.errors": 1, "streamapp.backoff": 1, "streamapp.package_data": 1,
    # 2: the one reader of the environment
    "streamapp.settings": 2,
    # 3: libraries: codecs, normalization rules, clients of the stack's services
    "streamapp.codecs": 3, "streamapp.normalize": 3, "streamapp.clients": 3, "streamapp.migrations": 3,
    "streamapp.eos": 3, "streamapp.coordinator_retry": 3,
    # 4: the parts that run: feeds, simulator, normalizer, stack, warehouse, operator tools
    "streamapp.feeds": 4, "streamapp.simulator": 4, "streamapp.dispatch": 4, "streamapp.app": 4,
    "streamapp.stack": 4, "streamapp.pipeline": 4, "streamapp.coldtier": 4, "streamapp.operate": 4,
    "streamapp.captures": 4, "streamapp.sql": 4,
    # 5: the commands that start the parts
    "streamapp.commands": 5,
    # 6: the command line
    "streamapp.cli": 6,
    # 7: the Faust agents, loaded by app.discover() from the app's autodiscover list
    "agents": 7,
}


def _layer(module: str) -> int | None:
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        layer = LAYERS.get(".".join(parts[:n]))
        if layer is not None:
            return layer
    return None


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(path: Path, module: str) -> list[tuple[int, str]]:
    """(line, module) of every import of this repository's packages in ``path``, at any depth."""
    found = []
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            # `from streamapp import topics` imports the module streamapp.topics
            found += [(node.lineno, f"{base}.{alias.name}" if _layer(f"{base}.{alias.name}") is not None
                       else base) for alias in node.names]
    return [(line, name) for line, name in found if name.split(".")[0] in ("streamapp", "agents", "records")]


def test_every_streamapp_module_has_a_layer():
    unplaced = [_module_name(p) for p in sorted((ROOT / "streamapp").rglob("*.py"))
                if _layer(_module_name(p)) is None and _module_name(p) != "streamapp"]
    assert not unplaced, f"modules with no layer in LAYERS: {unplaced}"


def test_no_module_imports_from_a_layer_above_its_own():
    upward = []
    for path in sorted((ROOT / "streamapp").rglob("*.py")):
        module = _module_name(path)
        own = _layer(module)
        if own is None:
            continue  # streamapp/__init__.py
        for line, name in _imported(path, module):
            target = _layer(name)
            if target is not None and target > own:
                upward.append(f"{path.relative_to(ROOT)}:{line}: {module} (layer {own}) imports {name} (layer {target})")
    assert not upward, "imports pointing up the layer order:\n" + "\n".join(upward)
