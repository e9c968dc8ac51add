"""gRPC server reflection of every public service, read from the descriptor set Envoy uses.

Each service's own reflection knows only that service and the files its generated code loaded;
this one knows every file of build/r3mes.binpb (google/api and r3mes/common options included), so
`describe` of any method resolves all of its imports.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_reflection.v1alpha import reflection, reflection_pb2, reflection_pb2_grpc

from gateway.catalog import UPSTREAMS

V1ALPHA = reflection.SERVICE_NAME
V1 = "grpc.reflection.v1.ServerReflection"
_METHOD = "ServerReflectionInfo"


def pool_of(descriptor_set: Path) -> descriptor_pool.DescriptorPool:
    files = descriptor_pb2.FileDescriptorSet.FromString(descriptor_set.read_bytes())
    pool = descriptor_pool.DescriptorPool()
    # protoc writes --include_imports sets in dependency order, as Add requires.
    for file in files.file:
        pool.Add(file)
    return pool


class _Reflection(reflection.ReflectionServicer):  # type: ignore[misc]
    """grpcio-reflection's servicer, but a method's full name (`pkg.Service.Method`, which
    grpcurl's `describe` asks for) finds its service's file: protobuf's pool looks up messages,
    enums, services and fields by name, not methods."""

    def _file_containing_symbol(self, request: Any, fully_qualified_name: str) -> Any:
        service, _, method = fully_qualified_name.rpartition(".")
        try:
            if method in self._pool.FindServiceByName(service).methods_by_name:
                fully_qualified_name = service
        except KeyError:
            pass  # not a method: the name is looked up as it is
        return super()._file_containing_symbol(request, fully_qualified_name)


def _v1_handler(servicer: _Reflection) -> grpc.GenericRpcHandler:
    """grpcio-reflection serves only v1alpha. v1 is the same protocol under another package
    (every message and field number identical), so its calls are decoded with the v1alpha
    messages and answered by the same servicer."""
    method = grpc.stream_stream_rpc_method_handler(
        servicer.ServerReflectionInfo,
        request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
        response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
    )
    return grpc.method_handlers_generic_handler(V1, {_METHOD: method})


def add_reflection(
    server: grpc.Server, descriptor_set: Path, extra_services: Iterable[str] = ()
) -> None:
    """Serve reflection v1alpha and v1 of every registered service (and of itself) on `server`."""
    names = [*(u.proto_service for u in UPSTREAMS), *extra_services, V1, V1ALPHA]
    servicer = _Reflection(names, pool=pool_of(descriptor_set))
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(servicer, server)
    server.add_generic_rpc_handlers((_v1_handler(servicer),))
