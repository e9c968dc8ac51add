"""Authentication: who the call's metadata proves the caller is (see services.core.auth)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from services.core.auth import ANONYMOUS, Authenticator, Principal


class Authentication:
    """Asks each authenticator in turn; the first that recognises a credential decides."""

    def __init__(self, authenticators: Sequence[Authenticator]) -> None:
        self._authenticators = tuple(authenticators)

    async def principal(self, metadata: Mapping[str, str]) -> Principal:
        for authenticator in self._authenticators:
            found = await authenticator.authenticate(metadata)
            if found is not None:
                return found
        return ANONYMOUS
