"""Regenerate docs/ops.md: every op type jaxsm lowers (from the registry) and the known gaps table.

    python scripts/gen_op_table.py

tests/test_docs.py fails when docs/ops.md is out of date.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "docs" / "ops.md"


def render() -> str:
    from jaxsm.ops import NEVER_LOWERED, OPS
    from jaxsm.ops.gaps import KNOWN_GAPS

    by_module: dict[str, list[str]] = defaultdict(list)
    for name, opdef in OPS.items():
        by_module[opdef.module.rsplit(".", 1)[-1]].append(name)
    lines = [
        "# Op coverage",
        "",
        "Generated from the op registry by `python scripts/gen_op_table.py`; do not edit by hand.",
        f"jaxsm lowers **{len(OPS)}** TensorFlow op types. `jaxsm ops DIR` reports the ops of one model.",
        "",
        "| module | count | op types |",
        "|---|---|---|",
    ]
    for module in sorted(by_module):
        names = sorted(by_module[module])
        lines.append(f"| `jaxsm/ops/{module}.py` | {len(names)} | {', '.join(names)} |")
    lines += [
        "",
        "## Never lowered",
        "",
        "Save/restore machinery, used only by the saver functions, which running a model never needs: "
        + ", ".join(sorted(NEVER_LOWERED))
        + ".",
        "",
        "## Known gaps",
        "",
        "| op | case | reason |",
        "|---|---|---|",
    ]
    lines += [f"| {o} | {c} | {r} |" for o, c, r in KNOWN_GAPS]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(render())
    print(f"wrote {OUT}")
