"""Generate Python code, type stubs and the Envoy descriptor set from protos/, lint them, check
them against the last released API, or export them for clients in other languages.

Third-party protos are never copied into the repository: google/api, google/rpc and google/type
come from the installed googleapis-common-protos package, google/protobuf from grpcio-tools.
`--export DIR` writes our protos and the google ones they (and the error details) need, so a
client generates code from DIR alone (google/protobuf ships with protoc and buf).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import google.api
import grpc_tools
from grpc_tools import protoc

from gateway.paths import BUILD, DESCRIPTOR_SET, GEN, ROOT

PROTO_ROOT = ROOT / "protos"
GEN_DIR = GEN
PROTO_DEPS = BUILD / "proto-deps"
# The API as last released (`make release-protos`), committed: what `buf breaking` compares the
# protos with, so it needs neither git history nor tags (CI may clone shallow) nor a registry.
RELEASED = PROTO_ROOT / "released.binpb"
GOOGLEAPIS_ROOT = Path(google.api.__path__[0]).parent.parent
WELL_KNOWN_ROOT = Path(grpc_tools.__file__).parent / "_proto"
THIRD_PARTY = ("google/api", "google/rpc", "google/type")
BIN_DIR = Path(sys.executable).parent
ERROR_DETAIL_PROTOS = ("google/rpc/status.proto", "google/rpc/error_details.proto")


def proto_files() -> list[str]:
    return sorted(str(p.relative_to(PROTO_ROOT)) for p in PROTO_ROOT.rglob("*.proto"))


def _protoc(*args: str) -> None:
    plugins = [
        f"--plugin={name}={BIN_DIR / name}" for name in ("protoc-gen-mypy", "protoc-gen-mypy_grpc")
    ]
    command = [
        "protoc",
        f"-I{PROTO_ROOT}",
        f"-I{GOOGLEAPIS_ROOT}",
        f"-I{WELL_KNOWN_ROOT}",
        *plugins,
        *args,
    ]
    if protoc.main(command) != 0:
        raise SystemExit(f"protoc failed: {' '.join(args)}")


def generate(out_dir: Path) -> None:
    """Write *_pb2.py, *_pb2_grpc.py and their .pyi stubs for every proto under protos/."""
    out_dir.mkdir(parents=True, exist_ok=True)
    _protoc(
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        # `quiet`: no "Writing mypy to ..." line per file at every `make run` after a change.
        f"--mypy_out=quiet:{out_dir}",
        f"--mypy_grpc_out=quiet:{out_dir}",
        *proto_files(),
    )


def build_descriptor_set(path: Path) -> None:
    """The descriptor set Envoy's transcoder and the OpenAPI generator read (imports included).

    google.rpc.Status and the standard error details are added although no proto of ours
    imports them: the transcoder drops an error body whose details it cannot decode.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    _protoc(
        f"--descriptor_set_out={path}",
        "--include_imports",
        "--include_source_info",
        *proto_files(),
        *ERROR_DETAIL_PROTOS,
    )


def stage_proto_deps(root: Path = ROOT) -> None:
    """Give buf the googleapis protos our protos import, taken from the installed package."""
    deps = root / PROTO_DEPS.relative_to(ROOT)
    shutil.rmtree(deps, ignore_errors=True)
    for package in THIRD_PARTY:
        shutil.copytree(GOOGLEAPIS_ROOT / package, deps / package, ignore=_not_proto)


def _not_proto(directory: str, names: list[str]) -> list[str]:
    return [n for n in names if not n.endswith(".proto") and not (Path(directory) / n).is_dir()]


def buf_lint() -> int:
    stage_proto_deps()
    return subprocess.run([str(BIN_DIR / "buf"), "lint"], cwd=ROOT, check=False).returncode


def breaking_changes(root: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """buf breaking of the protos under `root` against the released image, under buf.yaml's
    FILE rules: whatever would break code generated from the released protos (a field removed,
    renumbered, retyped or renamed, an RPC or a file moved) is listed and fails."""
    stage_proto_deps(root)
    against = root / RELEASED.relative_to(ROOT)
    return subprocess.run(
        [str(BIN_DIR / "buf"), "breaking", "--against", str(against)],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
    )


def release() -> None:
    """Record the current protos as the released API (ours alone, without source info, so the
    committed image changes only when the contract does)."""
    stage_proto_deps()
    command = [str(BIN_DIR / "buf"), "build", "--path", str(PROTO_ROOT.relative_to(ROOT) / "r3mes")]
    command += ["--exclude-source-info", "--output", str(RELEASED.relative_to(ROOT))]
    subprocess.run(command, cwd=ROOT, check=True)


def export(out_dir: Path) -> None:
    """buf export of our protos with the files they import, and google.rpc's Status and error
    details: no proto of ours imports those, but every client decodes errors with them."""
    stage_proto_deps()
    shutil.rmtree(out_dir, ignore_errors=True)
    paths = [PROTO_ROOT / "r3mes", *(PROTO_DEPS / name for name in ERROR_DETAIL_PROTOS)]
    command = [str(BIN_DIR / "buf"), "export", ".", "--output", str(out_dir)]
    for path in paths:
        command += ["--path", str(path.relative_to(ROOT))]
    subprocess.run(command, cwd=ROOT, check=True)


def regenerate() -> None:
    """Replace gen/ atomically enough that a failed protoc run leaves the old code in place."""
    with tempfile.TemporaryDirectory(dir=ROOT) as tmp:
        fresh = Path(tmp) / "gen"
        generate(fresh)
        shutil.rmtree(GEN_DIR, ignore_errors=True)
        fresh.rename(GEN_DIR)
    build_descriptor_set(DESCRIPTOR_SET)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lint", action="store_true", help="run buf lint instead of generating")
    parser.add_argument(
        "--breaking",
        action="store_true",
        help=f"run buf breaking against {RELEASED.relative_to(ROOT)} instead of generating",
    )
    parser.add_argument(
        "--release",
        action="store_true",
        help=f"write {RELEASED.relative_to(ROOT)}: the protos as they are become the released API",
    )
    parser.add_argument(
        "--export", type=Path, metavar="DIR", help="write the protos clients need into DIR"
    )
    args = parser.parse_args()
    if args.lint:
        raise SystemExit(buf_lint())
    if args.breaking:
        result = breaking_changes()
        print(result.stdout + result.stderr, end="", file=sys.stderr)
        raise SystemExit(result.returncode)
    if args.release:
        release()
        return
    if args.export:
        export(args.export)
        return
    regenerate()


if __name__ == "__main__":
    main()
