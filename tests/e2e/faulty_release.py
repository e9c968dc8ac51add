"""A faulty release of one service, for the canary tests and the rollback drill: the service as
built, except that each of its RPCs answers UNAVAILABLE, as a release that cannot reach what it
needs would (health stays SERVING, as it would for such a release). Test-only, so that no code
of the services carries a switch for it.

    python -m tests.e2e.faulty_release mining
"""

from __future__ import annotations

import dataclasses
import sys

from services.core.clock import utc_now
from services.core.errors import Unavailable
from services.core.hosting import HostContext, ServiceParts, host
from services.core.lifecycle import ServiceServer, run
from services.core.registry import spec_of
from services.core.servicespec import ServiceSpec
from services.core.settings import Settings

REASON = "FAULTY_RELEASE"


async def _refuse(request: object, context: object) -> object:
    raise Unavailable("this release is faulty (a test's canary)", reason=REASON)


def faulty(spec: ServiceSpec) -> ServiceSpec:
    async def build(context: HostContext) -> ServiceParts:
        parts = await spec.parts(context)
        # The generated registration reads each handler off the servicer object, so shadowing
        # the methods on the instance replaces them all, whatever the servicer's class.
        for method in parts.descriptor.methods:
            setattr(parts.servicer, method.name, _refuse)
        return parts

    return dataclasses.replace(spec, build=build)


def main() -> None:
    spec = faulty(spec_of(sys.argv[1]))

    async def create_server(settings: Settings) -> tuple[ServiceServer, int]:
        return await host(settings, [spec], utc_now)

    run(create_server)


if __name__ == "__main__":
    main()
