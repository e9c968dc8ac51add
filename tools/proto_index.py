"""Messages, enums and services of a descriptor set, by full name, with their proto comments."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from google.protobuf import descriptor_pb2

# Field numbers of the descriptor.proto messages, as used in SourceCodeInfo.Location.path.
_FILE_MESSAGES = 4
_FILE_ENUMS = 5
_FILE_SERVICES = 6
_MESSAGE_FIELDS = 2
_MESSAGE_NESTED = 3
_MESSAGE_ENUMS = 4
_ENUM_VALUES = 2
_SERVICE_METHODS = 2

Path = tuple[int, ...]


@dataclass(frozen=True)
class Comments:
    """Leading comments of one proto file, by element path."""

    by_path: dict[Path, str] = field(default_factory=dict)

    @classmethod
    def of(cls, file: descriptor_pb2.FileDescriptorProto) -> Comments:
        return cls(
            {
                tuple(location.path): _clean(location.leading_comments)
                for location in file.source_code_info.location
                if location.leading_comments.strip()
            }
        )

    def at(self, path: Path) -> str:
        return self.by_path.get(path, "")


def _clean(comment: str) -> str:
    # protoc keeps the space after `//` on every line; the text reads better without it.
    lines = [line[1:] if line.startswith(" ") else line for line in comment.splitlines()]
    return "\n".join(lines).strip()


@dataclass(frozen=True)
class MessageInfo:
    full_name: str
    proto: descriptor_pb2.DescriptorProto
    comment: str
    field_comments: dict[str, str]


@dataclass(frozen=True)
class EnumInfo:
    full_name: str
    proto: descriptor_pb2.EnumDescriptorProto
    comment: str
    value_comments: dict[str, str]


@dataclass(frozen=True)
class MethodInfo:
    service: str
    proto: descriptor_pb2.MethodDescriptorProto
    comment: str


@dataclass(frozen=True)
class ServiceInfo:
    full_name: str
    comment: str
    methods: Sequence[MethodInfo]

    @property
    def short_name(self) -> str:
        return self.full_name.rsplit(".", 1)[-1]


@dataclass
class ProtoIndex:
    messages: dict[str, MessageInfo] = field(default_factory=dict)
    enums: dict[str, EnumInfo] = field(default_factory=dict)
    services: dict[str, ServiceInfo] = field(default_factory=dict)

    @classmethod
    def of(cls, files: descriptor_pb2.FileDescriptorSet) -> ProtoIndex:
        index = cls()
        for file in files.file:
            index._add_file(file)
        return index

    def message(self, type_name: str) -> MessageInfo:
        """By full name, with or without the leading dot descriptors use in type_name."""
        return self.messages[type_name.lstrip(".")]

    def enum(self, type_name: str) -> EnumInfo:
        return self.enums[type_name.lstrip(".")]

    def _add_file(self, file: descriptor_pb2.FileDescriptorProto) -> None:
        comments = Comments.of(file)
        prefix = f"{file.package}." if file.package else ""
        for i, message in enumerate(file.message_type):
            self._add_message(prefix + message.name, message, comments, (_FILE_MESSAGES, i))
        for i, enum in enumerate(file.enum_type):
            self._add_enum(prefix + enum.name, enum, comments, (_FILE_ENUMS, i))
        for i, service in enumerate(file.service):
            path = (_FILE_SERVICES, i)
            full_name = prefix + service.name
            methods = [
                MethodInfo(full_name, method, comments.at((*path, _SERVICE_METHODS, j)))
                for j, method in enumerate(service.method)
            ]
            self.services[full_name] = ServiceInfo(full_name, comments.at(path), methods)

    def _add_message(
        self,
        full_name: str,
        message: descriptor_pb2.DescriptorProto,
        comments: Comments,
        path: Path,
    ) -> None:
        field_comments = {
            f.name: comments.at((*path, _MESSAGE_FIELDS, j)) for j, f in enumerate(message.field)
        }
        self.messages[full_name] = MessageInfo(
            full_name, message, comments.at(path), field_comments
        )
        for j, nested in enumerate(message.nested_type):
            self._add_message(
                f"{full_name}.{nested.name}", nested, comments, (*path, _MESSAGE_NESTED, j)
            )
        for j, enum in enumerate(message.enum_type):
            self._add_enum(f"{full_name}.{enum.name}", enum, comments, (*path, _MESSAGE_ENUMS, j))

    def _add_enum(
        self,
        full_name: str,
        enum: descriptor_pb2.EnumDescriptorProto,
        comments: Comments,
        path: Path,
    ) -> None:
        value_comments = {
            v.name: comments.at((*path, _ENUM_VALUES, j)) for j, v in enumerate(enum.value)
        }
        self.enums[full_name] = EnumInfo(full_name, enum, comments.at(path), value_comments)

    def iter_methods(self) -> Iterator[MethodInfo]:
        for service in self.services.values():
            yield from service.methods
