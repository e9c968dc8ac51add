"""One process hosting any subset of the services, on one gRPC port, behind one interceptor chain.

Each service declares itself once (a services.core.servicespec.ServiceSpec, in
`services/<name>/spec.py`, collected by
services.core.registry) and builds its own parts (`ServiceParts`): its own database, schema and
migrations, servicer, background jobs and closers. `host` builds the parts of the services it is
given, peers first, and serves them all from one grpc server. A service asks for a peer through
`HostContext.peer`: a co-hosted peer is its servicer called in-process (services.core.colocated),
any other one the generated stub on a channel to the peer's target, as before. Like Service
Weaver's components: where a peer runs is the deployment's choice, not the caller's code.

The kernel knows no service by name: names, protos and peers come from the specs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

import grpc
from google.protobuf.descriptor import ServiceDescriptor

from services.core.auth import Authenticator, InternalTokenAuthenticator
from services.core.background import PeriodicJob
from services.core.clients import ServiceClients
from services.core.clock import Clock, utc_now
from services.core.colocated import ColocatedStub
from services.core.db import Database
from services.core.lifecycle import Closer, ServiceServer, build_server, registration
from services.core.registry import SERVICES
from services.core.servicespec import DATABASE_COMPONENT, ServiceSpec
from services.core.settings import Settings, SettingsBase

StubT = TypeVar("StubT")
OwnSettingsT = TypeVar("OwnSettingsT", bound=SettingsBase)


@dataclass(frozen=True)
class ServiceParts:
    """What a service brings to the server that hosts it."""

    servicer: object
    add_to_server: Callable[[Any, grpc.aio.Server], None]
    descriptor: ServiceDescriptor
    closers: Sequence[Closer] = ()
    jobs: Sequence[PeriodicJob] = ()
    # Its database, probed in the background so that health says when it does not answer.
    database: Database | None = None
    # A service that checks callers' credentials itself (apikeys: keys in-process); with it
    # co-hosted, every hosted service accepts credentials that way.
    authenticators: Sequence[Authenticator] | None = None


@dataclass
class HostContext:
    """What a service's `build` gets from the process hosting it."""

    settings: Settings
    clock: Clock
    clients: ServiceClients
    # A service's own settings given by the caller (tests); others are read when first asked.
    configured: dict[type[SettingsBase], SettingsBase] = field(default_factory=dict)
    # Built so far, in build order.
    built: dict[str, tuple[ServiceSpec, ServiceParts]] = field(default_factory=dict)

    def own(self, kind: type[OwnSettingsT]) -> OwnSettingsT:
        """A service's own settings (`services/<name>/settings.py`): as configured by the
        caller, else read from the environment like the kernel's, once per process."""
        found = self.configured.get(kind)
        if found is None:
            found = self.configured[kind] = kind()
        return cast(OwnSettingsT, found)

    def peer(self, name: str, stub: Callable[[grpc.aio.Channel], StubT]) -> StubT:
        """The peer `name` as its generated async stub: in-process when co-hosted (built
        before the caller: specs declare their peers), else over its channel, on this
        service's own authority."""
        local = self.built.get(name)
        if local is None:
            return stub(self.clients.channel(name))
        spec, parts = local
        colocated = ColocatedStub(
            parts.servicer,
            spec.proto_service,
            spec.error_domain,
            self.settings.call_timeout_seconds,
        )
        return cast(StubT, colocated)


def build_order(specs: Sequence[ServiceSpec]) -> list[ServiceSpec]:
    """Peers before the services that call them (when co-hosted), else in the given order."""
    by_name = {spec.name: spec for spec in specs}
    ordered: list[ServiceSpec] = []

    def visit(spec: ServiceSpec, path: tuple[str, ...]) -> None:
        if spec in ordered:
            return
        if spec.name in path:
            raise ValueError(f"services call each other in a cycle: {' -> '.join(path)}")
        for peer in spec.peers:
            if peer in by_name:
                visit(by_name[peer], (*path, spec.name))
        ordered.append(spec)

    for spec in specs:
        visit(spec, ())
    return ordered


async def host(
    settings: Settings,
    specs: Sequence[ServiceSpec],
    clock: Clock = utc_now,
    *,
    authenticators: Sequence[Authenticator] | None = None,
    configured: Sequence[SettingsBase] = (),
) -> tuple[ServiceServer, int]:
    """One server for `specs` (in registry order), listening on the port of the first.

    `authenticators` replaces the credential checks (tests); by default a co-hosted service
    that checks credentials itself does it for all, else keys are checked by the remote one.
    `configured` gives services their own settings (tests); unset, they read the environment.
    """
    if not specs:
        raise ValueError("a process must host at least one service")
    context = HostContext(
        settings, clock, ServiceClients(settings), {type(own): own for own in configured}
    )
    try:
        for spec in build_order(specs):
            context.built[spec.name] = (spec, await spec.parts(context))
    except BaseException:
        await _close_all(context)
        raise
    built = [context.built[spec.name] for spec in specs]
    if authenticators is None:
        authenticators = _authenticators(context, built)
    jobs = []
    for spec, parts in built:
        for job in [*parts.jobs, *_database_probe(settings, parts.database)]:
            job.service = spec.name
            jobs.append(job)
    return build_server(
        settings,
        specs[0].name,
        [registration(p.add_to_server, p.servicer, p.descriptor) for _, p in built],
        # Closed in reverse: the services (in reverse build order) before the peer channels.
        closers=[context.clients.close, *(c for _, p in context.built.values() for c in p.closers)],
        authenticators=authenticators,
        jobs=jobs,
        error_domains={spec.proto_service: spec.error_domain for spec, _ in built},
        label="+".join(spec.name for spec in specs),
    )


def _database_probe(settings: Settings, database: Database | None) -> list[PeriodicJob]:
    """`<service>.database` in health, NOT_SERVING while the database does not answer: calls
    then end UNAVAILABLE, and an operator (or the front door's /healthz) sees which part is
    down. The service itself stays SERVING: every replica shares the database, so taking them
    out of the balancers would turn a retryable refusal into no service at all."""
    if database is None:
        return []
    return [PeriodicJob(DATABASE_COMPONENT, settings.db_probe_seconds, database.ping)]


def _authenticators(
    context: HostContext, hosted: Sequence[tuple[ServiceSpec, ServiceParts]]
) -> Sequence[Authenticator]:
    """A hosted service that checks credentials itself does it for every hosted one; else the
    issuer of credentials says how to check them from elsewhere (apikeys: over gRPC); with no
    issuer registered, only the internal token is known."""
    for _, parts in hosted:
        if parts.authenticators is not None:
            return parts.authenticators
    for spec in SERVICES:
        checks = spec.authenticators_from(context)
        if checks is not None:
            return checks
    return [InternalTokenAuthenticator(context.settings.internal_token_value())]


async def _close_all(context: HostContext) -> None:
    for _, parts in reversed(context.built.values()):
        for close in reversed(parts.closers):
            await close()
    await context.clients.close()
