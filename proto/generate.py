"""Regenerate the gRPC stubs from memory.proto: ``python -m raremem.proto.generate``.

protoc sees this folder under the virtual include path ``raremem/proto`` (``-Ivirtual=disk``),
so the stubs import each other as ``raremem.proto.memory_pb2`` with no post-processing, and
the file registers in protobuf's global pool as ``raremem/proto/memory.proto``, a name no
other project's ``memory.proto`` can take. ``tests/proto/test_generated.py`` regenerates into
a temporary folder and fails if the committed files differ.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

HERE = Path(__file__).resolve().parent          # the proto package folder itself
VIRTUAL = "raremem/proto"                       # its path as protoc and the pool see it
GENERATED = ("memory_pb2.py", "memory_pb2.pyi", "memory_pb2_grpc.py")


def generate(out: Path) -> None:
    """Write the generated modules into the folder ``out``."""
    with tempfile.TemporaryDirectory() as tmp:
        rc = protoc.main([
            "grpc_tools.protoc",
            f"-I{VIRTUAL}={HERE}",
            f"--python_out={tmp}",
            f"--pyi_out={tmp}",
            f"--grpc_python_out={tmp}",
            str(HERE / "memory.proto"),
        ])
        if rc != 0:
            raise RuntimeError(f"protoc failed with exit code {rc}")
        out.mkdir(parents=True, exist_ok=True)
        for name in GENERATED:
            shutil.copyfile(Path(tmp) / VIRTUAL / name, out / name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE, help="output folder [this package's own]")
    generate(parser.parse_args(argv).out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
