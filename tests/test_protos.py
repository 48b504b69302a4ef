"""The committed jaxsm/_proto modules are exactly what protos/ generates (compared by descriptor bytes)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos" / "jaxsm" / "_proto"
MODULES = ROOT / "jaxsm" / "_proto"


def _serialized_descriptor(module_path: Path) -> bytes:
    """The bytes passed to ``AddSerializedFile`` in a generated ``*_pb2.py`` (protoc-independent)."""
    tree = ast.parse(module_path.read_text())
    found = [
        node.args[0].value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "AddSerializedFile"
        and node.args
        and isinstance(node.args[0], ast.Constant)
        and isinstance(node.args[0].value, bytes)
    ]
    assert len(found) == 1, f"{module_path}: expected one AddSerializedFile(b'...') call, found {len(found)}"
    return found[0]


def _proto_stems() -> list[str]:
    return sorted(p.stem for p in PROTOS.glob("*.proto"))


def test_every_proto_has_a_module():
    stems = _proto_stems()
    assert stems, f"no .proto files under {PROTOS}"
    missing = [s for s in stems if not (MODULES / f"{s}_pb2.py").is_file()]
    assert missing == [], f"protos without a committed module (run scripts/gen_protos.py): {missing}"


def test_every_module_has_a_proto():
    stale = sorted(p.name for p in MODULES.glob("*_pb2.py") if p.name[: -len("_pb2.py")] not in _proto_stems())
    assert stale == [], f"committed modules whose .proto is gone: {stale}"


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> dict[str, Path]:
    pytest.importorskip("grpc_tools")
    out = tmp_path_factory.mktemp("protos")
    # A subprocess runs gen_protos.generate(out): grpc_tools' in-process protoc segfaults once TensorFlow
    # (another libprotobuf) is loaded, which other tests in the same worker do.
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_protos.py"), str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, f"scripts/gen_protos.py failed:\n{done.stderr}"
    paths = [Path(line) for line in done.stdout.splitlines() if line.strip()]
    return {p.name: p for p in paths}


@pytest.mark.parametrize("stem", _proto_stems())
def test_committed_module_is_current(generated, stem):
    name = f"{stem}_pb2.py"
    assert name in generated, f"scripts/gen_protos.py did not generate {name}"
    assert _serialized_descriptor(MODULES / name) == _serialized_descriptor(generated[name]), (
        f"jaxsm/_proto/{name} is stale: regenerate with `python scripts/gen_protos.py`"
    )
