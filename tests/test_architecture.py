"""The walls of docs/architecture.md, checked on the source: no import cycle between modules,
and each room imports only the rooms below it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "streamguard"

# Rooms from the bottom up: a room may import only rooms listed before it. `pixelize` (the
# one mosaic operator, protect/pixelize.py) is its own room because training and the models
# share it with the protection modes.
LAYERS = [
    "errors", "registry", "stages", "config", "frames", "assets", "pixelize", "detect", "appearance",
    "track",
    "models", "backends", "protect", "schedule", "process", "report", "progress", "io", "pipeline",
    "api",
    "live",
    "batch", "console", "cli",
]


def room(module: str) -> str:
    parts = module.split(".")[1:]
    if parts[:2] == ["protect", "pixelize"]:
        return "pixelize"
    if not parts or parts[0] in ("__init__", "__main__"):
        return "cli" if parts and parts[0] == "__main__" else "package"
    return parts[0]


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports() -> dict[str, set[str]]:
    """module -> streamguard modules it imports (at any depth of the file, so lazy imports
    inside functions count too; `if TYPE_CHECKING:` blocks do not)."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        skip = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
                and "TYPE_CHECKING" in ast.unparse(node.test) for n in ast.walk(node)}
        found: set[str] = set()
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            found |= {t for t in targets if t in modules and t != name}
        graph[name] = found
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_no_import_cycle_between_modules():
    assert cycles(imports()) == []


def test_each_room_imports_only_the_rooms_below_it():
    order = {name: i for i, name in enumerate(LAYERS)}
    wrong = []
    for module, targets in imports().items():
        here = room(module)
        if here == "package":
            continue
        assert here in order, f"{module}: room '{here}' is not in LAYERS (docs/architecture.md)"
        for target in targets:
            there = room(target)
            if there != here and there != "package" and order[there] >= order[here]:
                wrong.append(f"{module} -> {target}")
    assert wrong == []


def test_the_walk_sees_lazy_imports():
    """A check that cannot fail is no check: the walk must see imports inside functions."""
    graph = imports()
    assert "streamguard.protect.adversarial" in graph["streamguard.protect"]
    assert "streamguard.batch.distributed" in graph["streamguard.cli"]


def test_no_module_is_over_500_lines():
    long = {module_name(p): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > 500}
    assert long == {}


# -- the one spine's walls ------------------------------------------------------------------
# Each names the one module allowed to do a thing every path needs, so a second copy of it
# (a second encoder, decoder, queue system or per-frame bag) cannot creep back in.
ONE_PLACE = {
    "encoder": "streamguard.io.encode",  # video encoder streams are made here only
    "decoder": "streamguard.io.decode",  # video is decoded here only
    "stages": "streamguard.stages",  # queues between threads live here only
}


def wall_violations(sources: dict[str, str]) -> list[str]:
    """Breaches of the spine's walls in {module: source}: a video encoder stream added, video
    decoded, or a queue built outside its one module; an untyped `meta` bag on a frame."""
    wrong = []
    for module, text in sources.items():
        tree = ast.parse(text)
        uses_av = any(isinstance(n, (ast.Import, ast.ImportFrom)) and any(
            (a.name if isinstance(n, ast.Import) else n.module or "").split(".")[0] == "av"
            for a in n.names) for n in ast.walk(tree))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                name = node.func.attr
                owner = ast.unparse(node.func.value)
                if name == "add_stream" and module != ONE_PLACE["encoder"]:
                    wrong.append(f"{module}: adds an encoder stream (one encoder: io/encode.py)")
                # outside io/decode.py video is decoded only through a FrameDecoder (a
                # `...decoder.decode(packet)` call), never on a stream or codec context
                if uses_av and module != ONE_PLACE["decoder"] and (
                        (name == "decode" and not owner.lower().endswith("decoder"))
                        or (name == "create" and owner.endswith("CodecContext")
                            and "'r'" in ast.unparse(node))):
                    wrong.append(f"{module}: decodes video (one decoder: io/decode.py)")
                if module != ONE_PLACE["stages"] and (
                        (owner == "queue" and name in ("Queue", "SimpleQueue", "LifoQueue"))
                        or (owner == "threading" and name == "Condition")):
                    wrong.append(f"{module}: builds a queue (one stage system: stages.py)")
            if isinstance(node, ast.Attribute) and node.attr == "meta":
                wrong.append(f"{module}: reads a frame's `meta` (typed Frame fields instead)")
            if isinstance(node, ast.keyword) and node.arg == "meta":
                wrong.append(f"{module}: passes `meta=` (typed Frame fields instead)")
    return wrong


def test_the_spine_has_one_encoder_one_decoder_one_stage_system_and_a_typed_frame():
    sources = {module_name(p): p.read_text(encoding="utf-8") for p in PACKAGE.rglob("*.py")}
    assert wall_violations(sources) == []


@pytest.mark.parametrize("planted, wall", [
    ("import av\nout = av.open('x.mp4', 'w')\nout.add_stream('libx264')\n", "encoder"),
    ("import av\nfor packet in c.demux():\n    stream.decode(packet)\n", "decodes"),
    ("import av\nctx = av.CodecContext.create('h264', 'r')\n", "decodes"),
    ("import queue\nq = queue.Queue(maxsize=3)\n", "queue"),
    ("import threading\ncond = threading.Condition()\n", "queue"),
    ("x = frame.meta.get('damaged')\n", "meta"),
    ("f = Frame(0, 0, tb, image, meta={'t_in': 0})\n", "meta"),
])
def test_each_spine_wall_catches_a_planted_violation(planted, wall):
    """A wall that cannot fail is no wall: plant one breach of each in a live module."""
    found = wall_violations({"streamguard.live.planted": planted})
    assert len(found) >= 1 and all(wall in v for v in found), found
    # the same code in its one allowed module is no breach (meta never is)
    allowed = {"encoder": "encoder", "decodes": "decoder", "queue": "stages"}.get(wall)
    if allowed:
        assert wall_violations({ONE_PLACE[allowed]: planted}) == []
