"""Regenerate the gRPC stubs from memory.proto: ``python -m proto.generate``.

The include root is the repository root, so the generated modules import each other as
``proto.memory_pb2`` with no post-processing. ``tests/proto/test_generated.py`` regenerates
into a temporary folder and fails if the committed files differ.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO = "proto/memory.proto"
GENERATED = ("proto/memory_pb2.py", "proto/memory_pb2.pyi", "proto/memory_pb2_grpc.py")


def generate(out_root: Path) -> None:
    """Write the generated modules under ``out_root`` (mirroring the repository layout)."""
    (out_root / "proto").mkdir(parents=True, exist_ok=True)
    rc = protoc.main([
        "grpc_tools.protoc",
        f"-I{ROOT}",
        f"--python_out={out_root}",
        f"--pyi_out={out_root}",
        f"--grpc_python_out={out_root}",
        str(ROOT / PROTO),
    ])
    if rc != 0:
        raise RuntimeError(f"protoc failed with exit code {rc}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT, help="output root [repository root]")
    generate(parser.parse_args(argv).out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
