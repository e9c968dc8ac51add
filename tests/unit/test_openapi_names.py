"""Schema names in gateway/openapi.json: the type's own name, qualified only on a clash."""

from __future__ import annotations

from google.protobuf import descriptor_pb2

from tools.openapi_schemas import component_names
from tools.proto_index import ProtoIndex


def file_with(package: str, *messages: str) -> descriptor_pb2.FileDescriptorProto:
    file = descriptor_pb2.FileDescriptorProto(name=f"{package}.proto", package=package)
    for name in messages:
        file.message_type.add(name=name)
    return file


def test_a_type_is_named_without_its_package_and_a_nested_one_after_its_parents() -> None:
    users = file_with("r3mes.users.v1", "User", "CreateUserRequest")
    users.message_type[0].nested_type.add(name="Flags")

    names = component_names(ProtoIndex.of(descriptor_pb2.FileDescriptorSet(file=[users])))

    assert names == {
        "r3mes.users.v1.User": "User",
        "r3mes.users.v1.User.Flags": "UserFlags",
        "r3mes.users.v1.CreateUserRequest": "CreateUserRequest",
    }


def test_two_packages_sharing_a_name_both_get_their_package_in_it() -> None:
    files = descriptor_pb2.FileDescriptorSet(
        file=[file_with("r3mes.mining.v1", "Page", "Block"), file_with("r3mes.credits.v1", "Page")]
    )

    names = component_names(ProtoIndex.of(files))

    assert names["r3mes.mining.v1.Page"] == "MiningV1Page"
    assert names["r3mes.credits.v1.Page"] == "CreditsV1Page"
    assert names["r3mes.mining.v1.Block"] == "Block"
