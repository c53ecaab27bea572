"""Print edgebench's import map: rooms, floors, arrows, arrows that run back up, and import cycles.

A *room* is a top-level module (``edgebench/plan.py``) or a top-level package (``edgebench/prune/``, its
sub-packages included). An *arrow* is a room importing another room, at module scope or inside a function
(imports under ``if TYPE_CHECKING`` are annotations, not arrows). Rooms that import each other, directly or
round a loop, form an import *cycle* and share a floor; otherwise a room sits one *floor* above the highest
room it imports. An arrow *runs back up* when it points at a room on its own or a higher floor, which only
an arrow inside a cycle can do.

With ``--files`` the rooms are the package's files instead (``edgebench.executor.base``): a cycle there
is two modules that need each other, which the room map cannot see inside a package or across packages
that are otherwise one-way. An arrow goes to every edgebench module an import statement names (the
package ``__init__`` for ``from edgebench.prune import x``, the submodule for ``from edgebench.prune
import build``), not to the parent packages Python also runs on the way.

    python scripts/import_map.py [--files [--annotations]] [--verbose]
"""

from __future__ import annotations

import argparse
import ast
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "edgebench"


def room_of(module: str) -> str | None:
    """``edgebench.prune.criteria.base`` -> ``prune``; ``edgebench.plan`` -> ``plan``; None outside edgebench."""
    parts = module.split(".")
    if parts[0] != "edgebench" or len(parts) < 2:
        return None
    return parts[1]


def module_name(path: Path, package: Path = PACKAGE) -> str:
    """``edgebench/prune/build.py`` -> ``edgebench.prune.build``; a package's ``__init__.py`` is the package."""
    rel = path.relative_to(package.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path, package_dir: Path = PACKAGE, annotations: bool = False) -> list[str]:
    """Every module named by an import statement in ``path`` (``from a import b`` names ``a`` and ``a.b``);
    those under ``if TYPE_CHECKING`` only with ``annotations``."""
    tree = ast.parse(path.read_text())
    found: list[str] = []
    package = module_name(path, package_dir).split(".")
    if path.name != "__init__.py":
        package = package[:-1]

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if not annotations and isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue  # annotations only: no run-time arrow
            if isinstance(child, ast.Import):
                found.extend(alias.name for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    base = ".".join(package[: len(package) - child.level + 1] + ([base] if base else []))
                found.append(base)
                found.extend(f"{base}.{alias.name}" for alias in child.names)
            visit(child)

    visit(tree)
    return found


def room_edges() -> tuple[set[str], dict[str, set[str]]]:
    """Top-level rooms and the arrows between them."""
    edges: dict[str, set[str]] = defaultdict(set)
    rooms: set[str] = set()
    for path in sorted(PACKAGE.rglob("*.py")):
        src = room_of(module_name(path))
        if src is None:  # edgebench/__init__.py
            continue
        rooms.add(src)
        for target in imports(path):
            dst = room_of(target)
            if dst is None or dst == src or (not (PACKAGE / dst).exists() and not (PACKAGE / f"{dst}.py").exists()):
                continue
            edges[src].add(dst)
    return rooms, edges


def file_edges(package: Path = PACKAGE, annotations: bool = False) -> tuple[set[str], dict[str, set[str]]]:
    """Every module of ``package`` and the arrows between modules (an import naming a module's attribute
    points at the module); ``annotations`` counts imports made for type annotations only."""
    paths = {module_name(path, package): path for path in sorted(package.rglob("*.py"))}
    edges: dict[str, set[str]] = defaultdict(set)
    for src, path in paths.items():
        for target in imports(path, package, annotations):
            dst = target if target in paths else None
            if dst is not None and dst != src:
                edges[src].add(dst)
    return set(paths), edges


def import_map(files: bool = False, package: Path = PACKAGE, annotations: bool = False) -> list[str]:
    """The map's lines: the summary first, then floors, arrows running back up and cycles."""
    rooms, edges = file_edges(package, annotations) if files else room_edges()
    cycles = strongly_connected(rooms, edges)
    floor = floors(rooms, edges, cycles)
    back_up = sorted((a, b) for a in rooms for b in edges[a] if floor[b] >= floor[a])
    n_arrows = sum(len(v) for v in edges.values())
    noun = "files" if files else "rooms"
    lines = [f"{noun} {len(rooms)}, floors {max(floor.values()) + 1}, arrows {n_arrows}, "
             f"running back up {len(back_up)}, import cycles {len(cycles)}"]
    for level in range(max(floor.values()) + 1):
        lines.append(f"  floor {level}: {', '.join(sorted(r for r in rooms if floor[r] == level))}")
    lines += [f"  back up: {a} (floor {floor[a]}) -> {b} (floor {floor[b]})" for a, b in back_up]
    lines += [f"  cycle: {' <-> '.join(sorted(cycle))}" for cycle in cycles]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", action="store_true", help="one room per module file instead of per top-level room")
    parser.add_argument("--annotations", action="store_true",
                        help="with --files: count imports under 'if TYPE_CHECKING' too (files that know each other's types)")
    parser.add_argument("--verbose", action="store_true", help="list the floors, arrows that run back up and cycles")
    args = parser.parse_args()
    lines = import_map(files=args.files, annotations=args.annotations)
    print("\n".join(lines if args.verbose else lines[:1]))


def floors(rooms: set[str], edges: dict[str, set[str]], cycles: list[set[str]]) -> dict[str, int]:
    """Longest-path layering of the rooms, each cycle condensed to one node on one floor."""
    node = {room: frozenset([room]) for room in rooms}
    for cycle in cycles:
        node.update({room: frozenset(cycle) for room in cycle})
    level: dict[frozenset[str], int] = {}

    def depth(n: frozenset[str]) -> int:
        if n not in level:
            below = {node[d] for r in n for d in edges[r]} - {n}
            level[n] = 1 + max(depth(b) for b in below) if below else 0
        return level[n]

    return {room: depth(node[room]) for room in rooms}


def strongly_connected(rooms: set[str], edges: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's algorithm; components of more than one room are import cycles."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(component)

    for room in sorted(rooms):
        if room not in index:
            visit(room)
    return found


if __name__ == "__main__":
    main()
