"""Regenerate jaxsm/_proto/*_pb2.py from protos/ (needs grpcio-tools).

    python scripts/gen_protos.py [OUT_DIR]

OUT_DIR defaults to the repository root; tests/test_protos.py generates into a temporary directory and
compares with the committed modules.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def generate(out_dir: Path) -> list[Path]:
    from grpc_tools import protoc

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "jaxsm" / "_proto").mkdir(parents=True, exist_ok=True)
    protos = sorted((ROOT / "protos" / "jaxsm" / "_proto").glob("*.proto"))
    include = str(Path(protoc.__file__).parent / "_proto")
    args = ["protoc", f"-I{ROOT / 'protos'}", f"-I{include}", f"--python_out={out_dir}"]
    rc = protoc.main(args + [str(p) for p in protos])
    if rc != 0:
        raise SystemExit(f"protoc failed with exit code {rc}")
    return [out_dir / "jaxsm" / "_proto" / (p.stem + "_pb2.py") for p in protos]


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT
    for path in generate(out):
        print(path)
