"""Generated documentation stays current."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_op_table_is_current():
    spec = importlib.util.spec_from_file_location("gen_op_table", ROOT / "scripts" / "gen_op_table.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert (ROOT / "docs" / "ops.md").read_text() == mod.render(), "run python scripts/gen_op_table.py"
    assert (ROOT / "jaxsm" / "graph" / "op_names.py").read_text() == mod.render_names(), (
        "run python scripts/gen_op_table.py"
    )
