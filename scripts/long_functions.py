"""List functions in product code longer than a limit (default 80 lines); exit 1 if any.

Product code is `schemas`, `connectors` and `orchestrator`; fakes of vendors (`connectors/fakes`)
count too. A function's length is from its `def` line to its last line, docstring included.
Exceptions live in `ALLOWED` below, each with its reason.
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

ROOTS = ("schemas", "connectors", "orchestrator")
#: "path:function" -> why it may be longer.
ALLOWED: dict[str, str] = {}


def long_functions(root: Path, limit: int) -> list[tuple[str, int]]:
    """(path:qualified name, length) of every function over `limit` lines below `root`."""
    found = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node, qualname in _functions(tree, ""):
            length = (node.end_lineno or node.lineno) - node.lineno + 1
            if length > limit:
                found.append((f"{path.as_posix()}:{qualname}", length))
    return found


def _functions(node: ast.AST, prefix: str):  # type: ignore[no-untyped-def]
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
            yield child, prefix + child.name
            yield from _functions(child, prefix + child.name + ".")
        elif isinstance(child, ast.ClassDef):
            yield from _functions(child, prefix + child.name + ".")


def main() -> int:
    """Print the functions over the limit that are not allowed; 1 if there are any."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--limit", type=int, default=80)
    args = parser.parse_args()
    bad = []
    for root in ROOTS:
        for where, length in long_functions(Path(root), args.limit):
            if where not in ALLOWED:
                bad.append(f"{where}: {length} lines (limit {args.limit})")
    for line in bad:
        print(line)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
