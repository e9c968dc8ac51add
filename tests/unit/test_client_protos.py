"""What clients in other languages generate from: the descriptor set `make protos` writes and the
proto tree `make client-protos` exports are each complete on their own."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from google.protobuf import descriptor_pb2
from grpc_tools import protoc

from services.core.registry import NAMES
from tools import protos

ERROR_TYPES = {"google.rpc.Status", "google.rpc.ErrorInfo", "google.rpc.BadRequest"}


def message_names(files: descriptor_pb2.FileDescriptorSet) -> set[str]:
    return {
        f"{file.package}.{message.name}" for file in files.file for message in file.message_type
    }


def test_the_descriptor_set_holds_every_file_it_imports_and_the_error_details() -> None:
    files = descriptor_pb2.FileDescriptorSet.FromString(protos.DESCRIPTOR_SET.read_bytes())
    names = {file.name for file in files.file}

    missing = {dep for file in files.file for dep in file.dependency} - names

    assert missing == set()
    assert message_names(files) >= ERROR_TYPES


def test_the_exported_protos_compile_with_nothing_but_protocs_own_well_known_types(
    tmp_path: Path,
) -> None:
    exported = tmp_path / "client-protos"
    subprocess.run(
        [sys.executable, str(Path(protos.__file__)), "--export", str(exported)], check=True
    )
    sources = sorted(str(p.relative_to(exported)) for p in exported.rglob("*.proto"))
    compiled = tmp_path / "compiled.binpb"

    status = protoc.main(
        [
            "protoc",
            f"-I{exported}",
            f"-I{protos.WELL_KNOWN_ROOT}",
            "--include_imports",
            f"--descriptor_set_out={compiled}",
            *sources,
        ]
    )

    assert status == 0
    assert not any(source.startswith("google/protobuf/") for source in sources)
    files = descriptor_pb2.FileDescriptorSet.FromString(compiled.read_bytes())
    assert {f"r3mes/{name}/v1/{name}.proto" for name in NAMES} <= {file.name for file in files.file}
    assert message_names(files) >= ERROR_TYPES
