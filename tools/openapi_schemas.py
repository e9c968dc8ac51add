"""JSON schemas of proto messages as Envoy's transcoder prints and parses them (proto3 JSON with
proto field names): 64-bit integers are strings, enums are names, well-known types have their
special forms, and fields are described by their proto comments."""

from __future__ import annotations

from typing import Any

from google.api import field_behavior_pb2
from google.protobuf import descriptor_pb2
from r3mes.common.v1 import options_pb2

from tools.proto_index import MessageInfo, ProtoIndex

Schema = dict[str, Any]
FieldProto = descriptor_pb2.FieldDescriptorProto

COMPONENTS_PREFIX = "#/components/schemas/"
WALLET_ADDRESS_PATTERN = "^remes1[02-9ac-hj-np-z]{6,}$"
# The wallet of docs/architecture.md's ADR-036 sample, whose public key and signature are the
# examples of CreateAPIKeyWithSignature: the examples agree with each other.
EXAMPLE_WALLET = "remes1nmxc98ww6mdvm6h4anee0pxa8cgdezfclgsdxk"
# A valid value per format. Without an example Swagger UI's "Try it out" makes one up from the
# pattern, and random text from `^remes1...` fails the bech32 checksum (400 on "Execute").
FORMAT_EXAMPLES: dict[int, str] = {
    options_pb2.FORMAT_WALLET_ADDRESS: EXAMPLE_WALLET,
    options_pb2.FORMAT_API_KEY: "r3mes_HUkT8R4WtGqYo91UNwRPTMif3ObGrw4Q3yYIjv",
    options_pb2.FORMAT_NAME: "laptop",
    options_pb2.FORMAT_FREE_TEXT: "Monthly top-up",
    options_pb2.FORMAT_URL: "https://app.r3mes.example/hooks/credits",
    options_pb2.FORMAT_IDEMPOTENCY_KEY: "2026-01-15-topup-1",
}

_INT64_TYPES = {
    FieldProto.TYPE_INT64: "int64",
    FieldProto.TYPE_SINT64: "int64",
    FieldProto.TYPE_SFIXED64: "int64",
    FieldProto.TYPE_UINT64: "uint64",
    FieldProto.TYPE_FIXED64: "uint64",
}
_INT32_TYPES = {
    FieldProto.TYPE_INT32: "int32",
    FieldProto.TYPE_SINT32: "int32",
    FieldProto.TYPE_SFIXED32: "int32",
    FieldProto.TYPE_UINT32: "uint32",
    FieldProto.TYPE_FIXED32: "uint32",
}
_OTHER_SCALARS: dict[int, Schema] = {
    FieldProto.TYPE_DOUBLE: {"type": "number", "format": "double"},
    FieldProto.TYPE_FLOAT: {"type": "number", "format": "float"},
    FieldProto.TYPE_BOOL: {"type": "boolean"},
    FieldProto.TYPE_STRING: {"type": "string"},
    FieldProto.TYPE_BYTES: {"type": "string", "format": "byte"},
}

_INT64_STRING: Schema = {
    "type": "string",
    "format": "int64",
    "pattern": "^-?[0-9]+$",
    "description": "64-bit integer as a decimal string (proto3 JSON).",
}
WELL_KNOWN: dict[str, Schema] = {
    "google.protobuf.Timestamp": {
        "type": "string",
        "format": "date-time",
        "description": "RFC 3339 time in UTC, e.g. 2026-01-15T12:00:00Z.",
    },
    "google.protobuf.Duration": {
        "type": "string",
        "pattern": "^-?[0-9]+(\\.[0-9]{1,9})?s$",
        "description": "Seconds with an `s` suffix, e.g. 1.5s.",
    },
    "google.protobuf.FieldMask": {
        "type": "string",
        "description": "Comma-separated field paths (lowerCamelCase).",
    },
    "google.protobuf.Empty": {"type": "object"},
    "google.protobuf.Struct": {"type": "object", "additionalProperties": True},
    "google.protobuf.Value": {"description": "Any JSON value."},
    "google.protobuf.ListValue": {"type": "array", "items": {}},
    "google.protobuf.Any": {
        "type": "object",
        "properties": {"@type": {"type": "string"}},
        "required": ["@type"],
        "additionalProperties": True,
        "description": "A message of the type named by `@type`, with its fields beside it.",
    },
}


def _wrapper(json_type: str, label: str, json_format: str | None = None) -> Schema:
    formatted = {"format": json_format} if json_format else {}
    return {
        "type": [json_type, "null"],
        **formatted,
        "description": f"A nullable {label} (google.protobuf wrapper).",
    }


WELL_KNOWN.update(
    {
        "google.protobuf.DoubleValue": _wrapper("number", "double"),
        "google.protobuf.FloatValue": _wrapper("number", "float"),
        "google.protobuf.Int64Value": _wrapper("string", "int64 (a string)", "int64"),
        "google.protobuf.UInt64Value": _wrapper("string", "uint64 (a string)", "uint64"),
        "google.protobuf.Int32Value": _wrapper("integer", "int32", "int32"),
        "google.protobuf.UInt32Value": _wrapper("integer", "uint32", "uint32"),
        "google.protobuf.BoolValue": _wrapper("boolean", "bool"),
        "google.protobuf.StringValue": _wrapper("string", "string"),
        "google.protobuf.BytesValue": _wrapper("string", "bytes (base64)", "byte"),
    }
)


def field_behaviors(field: FieldProto) -> set[int]:
    return set(field.options.Extensions[field_behavior_pb2.field_behavior])


def is_required(field: FieldProto) -> bool:
    return field_behavior_pb2.REQUIRED in field_behaviors(field)


def _short_name(full_name: str) -> str:
    """`r3mes.users.v1.User` -> `User`, a nested `pkg.Block.Kind` -> `BlockKind`: the type's own
    names (capitalized, by proto style) without its package."""
    parts = full_name.split(".")
    first_type = next(i for i, part in enumerate(parts) if part[:1].isupper())
    return "".join(parts[first_type:])


def _qualified_name(full_name: str) -> str:
    """For the rare short name that two packages share: `r3mes.mining.v1.Page` -> `MiningV1Page`
    (the leading package segment, common to all, is dropped)."""
    parts = full_name.split(".")
    first_type = next(i for i, part in enumerate(parts) if part[:1].isupper())
    package = "".join(part.capitalize() for part in parts[1:first_type])
    return package + _short_name(full_name)


def component_names(index: ProtoIndex) -> dict[str, str]:
    """Full proto name -> the schema name a generated client turns into a class (`User`,
    `CreateUserRequest`, `Status`), qualified only where two types would share one."""
    full_names = [*index.messages, *index.enums]
    counts: dict[str, int] = {}
    for full_name in full_names:
        counts[_short_name(full_name)] = counts.get(_short_name(full_name), 0) + 1
    return {
        name: _short_name(name) if counts[_short_name(name)] == 1 else _qualified_name(name)
        for name in full_names
    }


class SchemaBuilder:
    """Builds schemas and collects the component schemas they refer to, by component name."""

    def __init__(self, index: ProtoIndex) -> None:
        self.index = index
        self.names = component_names(index)
        self.components: dict[str, Schema] = {}
        self._building_examples: set[str] = set()

    def component(self, type_name: str) -> Schema:
        """The component schema of a message or enum already referred to."""
        return self.components[self.names[type_name.lstrip(".")]]

    def ref(self, type_name: str) -> Schema:
        """A $ref to the message or enum (its component is built on first use), or the inline
        schema of a well-known type."""
        name = type_name.lstrip(".")
        if name in WELL_KNOWN:
            return dict(WELL_KNOWN[name])
        component = self.names[name]
        if component not in self.components:
            self.components[component] = {}  # a placeholder, so recursive messages terminate
            if name in self.index.enums:
                self.components[component] = self._enum_schema(name)
            else:
                self.components[component] = self.message_schema(self.index.message(name))
        return {"$ref": COMPONENTS_PREFIX + component}

    def message_schema(self, info: MessageInfo, omit: frozenset[str] = frozenset()) -> Schema:
        """The object schema of a message; fields named in `omit` (bound to the path) left out."""
        fields = [f for f in info.proto.field if f.name not in omit]
        schema: Schema = {"type": "object"}
        if info.comment:
            schema["description"] = info.comment
        schema["properties"] = {
            f.name: self.field_schema(f, info.field_comments[f.name]) for f in fields
        }
        required = [f.name for f in fields if is_required(f)]
        if required:
            schema["required"] = required
        return schema

    def field_schema(self, field: FieldProto, comment: str = "") -> Schema:
        schema: Schema
        map_entry = self._map_entry(field)
        if map_entry is not None:
            # A map is a JSON object; its keys are strings whatever their proto type.
            value_field = map_entry.proto.field[1]
            schema = {"type": "object", "additionalProperties": self._value_schema(value_field)}
        elif field.label == FieldProto.LABEL_REPEATED:
            schema = {"type": "array", "items": self._value_schema(field)}
        else:
            schema = self._value_schema(field)
        # The field's comment first, then what its type adds (e.g. "64-bit integer as a string").
        type_description = str(schema.pop("description", ""))
        description = "\n\n".join(part for part in (comment, type_description) if part)
        if description:
            schema["description"] = description
        if field_behavior_pb2.OUTPUT_ONLY in field_behaviors(field):
            schema["readOnly"] = True
        return schema

    def with_request_example(self, field: FieldProto, schema: Schema) -> Schema:
        """`schema`, the field's, with an example where its rules give none (see `_example`):
        Swagger UI's "Try it out" sends a request field's example as it is. Only requests get
        these; a response's sample is better left to Swagger UI (an item, not an empty list)."""
        if "examples" not in schema and self._map_entry(field) is None:
            example = self._derived_example(field, schema)
            if example is not None:
                schema["examples"] = [example]
        return schema

    def with_request_examples(self, info: MessageInfo, schema: Schema) -> Schema:
        """The object schema of request message `info` with an example in each field's."""
        properties = schema.get("properties", {})
        for field in info.proto.field:
            if field.name in properties:
                self.with_request_example(field, properties[field.name])
        return schema

    def _derived_example(self, field: FieldProto, schema: Schema) -> Any:
        """From the field's type: a list holds its element's example (an optional list with none
        is empty), a bool is false, an enum takes its rule's example, and a message its fields'."""
        if schema.get("type") == "array":
            element = self._value_example(field, schema["items"])
            if element is not None:
                return [element]
            return None if is_required(field) else []
        return self._value_example(field, schema)

    def _value_example(self, field: FieldProto, schema: Schema) -> Any:
        if "examples" in schema:
            return schema["examples"][0]
        if field.type == FieldProto.TYPE_BOOL:
            return False
        rules = field.options.Extensions[options_pb2.rules]
        if field.type == FieldProto.TYPE_ENUM and rules.HasField("example"):
            return rules.example
        name = field.type_name.lstrip(".")
        if field.type == FieldProto.TYPE_MESSAGE and name not in WELL_KNOWN:
            return self._message_example(name)
        return None

    def _message_example(self, name: str) -> dict[str, Any] | None:
        """The examples of the message's settable fields; none while it is being built (a
        recursive message), or when a required field has none or no field has one."""
        if name in self._building_examples:
            return None
        self._building_examples.add(name)
        try:
            example = {}
            for field in self.index.message(name).proto.field:
                if field_behavior_pb2.OUTPUT_ONLY in field_behaviors(field):
                    continue
                examples = self.with_request_example(field, self.field_schema(field)).get(
                    "examples"
                )
                if examples:
                    example[field.name] = examples[0]
                elif is_required(field):
                    return None
            return example or None
        finally:
            self._building_examples.discard(name)

    def _map_entry(self, field: FieldProto) -> MessageInfo | None:
        if field.type != FieldProto.TYPE_MESSAGE or field.label != FieldProto.LABEL_REPEATED:
            return None
        info = self.index.message(field.type_name)
        return info if info.proto.options.map_entry else None

    def _value_schema(self, field: FieldProto) -> Schema:
        """The schema of one value of the field (an element, if it is repeated)."""
        if field.type in (FieldProto.TYPE_MESSAGE, FieldProto.TYPE_ENUM):
            return self.ref(field.type_name)
        if field.type in _INT64_TYPES:
            schema = dict(_INT64_STRING, format=_INT64_TYPES[field.type])
        elif field.type in _INT32_TYPES:
            schema = {"type": "integer", "format": _INT32_TYPES[field.type]}
            if _INT32_TYPES[field.type] == "uint32":
                schema["minimum"] = 0
        else:
            schema = dict(_OTHER_SCALARS[field.type])
        self._apply_rules(field, schema)
        return schema

    @staticmethod
    def _apply_rules(field: FieldProto, schema: Schema) -> None:
        """What the validation interceptor enforces (options.proto), where a schema can say it."""
        if not field.options.HasExtension(options_pb2.rules):
            return
        rules = field.options.Extensions[options_pb2.rules]
        if rules.format == options_pb2.FORMAT_WALLET_ADDRESS:
            schema["pattern"] = WALLET_ADDRESS_PATTERN
        if rules.HasField("max_length"):
            schema["maxLength"] = rules.max_length
        if schema.get("type") == "integer":
            if rules.HasField("min"):
                schema["minimum"] = rules.min
            if rules.HasField("max"):
                schema["maximum"] = rules.max
        example = _example(rules, schema)
        if example is not None:
            # JSON Schema's `examples`, which Swagger UI's sample bodies read (3.1 documents).
            schema["examples"] = [example]

    def _enum_schema(self, name: str) -> Schema:
        info = self.index.enum(name)
        values = [v.name for v in info.proto.value]
        lines = [
            f"- `{v}`: {info.value_comments[v]}" if info.value_comments[v] else f"- `{v}`"
            for v in values
        ]
        description = "\n".join([info.comment, "", *lines]).strip()
        return {"type": "string", "enum": values, "description": description}


def _example(rules: options_pb2.FieldRules, schema: Schema) -> str | int | None:
    """The field's example in its JSON form: the rule's own, its format's, else for an integer its
    default, lower bound or upper bound (an int64 as a string, like its values)."""
    if rules.HasField("example"):
        text = rules.example
    elif rules.format in FORMAT_EXAMPLES:
        text = FORMAT_EXAMPLES[rules.format]
    elif rules.HasField("default_value"):
        text = str(rules.default_value)
    elif rules.HasField("min"):
        text = str(rules.min)
    elif rules.HasField("max"):
        text = str(rules.max)
    else:
        return None
    return int(text) if schema.get("type") == "integer" else text
