"""APIKeysService: each RPC converts the request, calls its use case, converts the result."""

from __future__ import annotations

from typing import Any

import grpc
from r3mes.apikeys.v1 import apikeys_pb2, apikeys_pb2_grpc

from services.apikeys.domain import APIKey, APIKeyState, Challenge
from services.apikeys.usecases import APIKeysUseCases
from services.apikeys.validation_wire import validation_message
from services.core.clock import Clock
from services.core.page_tokens import PageTokens
from services.core.wire import timestamp

Context = grpc.aio.ServicerContext[Any, Any]

# The wire's APIKeyState; the same domain state is a ValidationStatus in validation_wire.py.
_STATES = {
    APIKeyState.ACTIVE: apikeys_pb2.API_KEY_STATE_ACTIVE,
    APIKeyState.REVOKED: apikeys_pb2.API_KEY_STATE_REVOKED,
    APIKeyState.EXPIRED: apikeys_pb2.API_KEY_STATE_EXPIRED,
}


class APIKeysServicer(apikeys_pb2_grpc.APIKeysServiceServicer):
    def __init__(self, use_cases: APIKeysUseCases, tokens: PageTokens, clock: Clock) -> None:
        self._use_cases = use_cases
        self._tokens = tokens
        self._clock = clock  # a key's state is read off its times at the moment of the answer

    async def CreateAPIKey(
        self, request: apikeys_pb2.CreateAPIKeyRequest, context: Context
    ) -> apikeys_pb2.CreateAPIKeyResponse:
        issued = await self._use_cases.create_key(
            request.wallet_address, request.name, _expires_days(request)
        )
        return apikeys_pb2.CreateAPIKeyResponse(
            api_key=self._key_message(issued.api_key), secret=issued.secret
        )

    async def ValidateAPIKey(
        self, request: apikeys_pb2.ValidateAPIKeyRequest, context: Context
    ) -> apikeys_pb2.ValidateAPIKeyResponse:
        return validation_message(await self._use_cases.validate(request.secret))

    async def ListAPIKeys(
        self, request: apikeys_pb2.ListAPIKeysRequest, context: Context
    ) -> apikeys_pb2.ListAPIKeysResponse:
        page = await self._use_cases.list_keys(
            request.wallet_address, self._tokens.request_of(request)
        )
        return apikeys_pb2.ListAPIKeysResponse(
            api_keys=[self._key_message(key) for key in page.items],
            next_page_token=self._tokens.next_token(request, page),
        )

    async def RevokeAPIKey(
        self, request: apikeys_pb2.RevokeAPIKeyRequest, context: Context
    ) -> apikeys_pb2.RevokeAPIKeyResponse:
        key = await self._use_cases.revoke_key(request.wallet_address, request.key_id)
        return apikeys_pb2.RevokeAPIKeyResponse(api_key=self._key_message(key))

    async def DeleteAPIKey(
        self, request: apikeys_pb2.DeleteAPIKeyRequest, context: Context
    ) -> apikeys_pb2.DeleteAPIKeyResponse:
        await self._use_cases.delete_key(request.wallet_address, request.key_id)
        return apikeys_pb2.DeleteAPIKeyResponse()

    async def CreateChallenge(
        self, request: apikeys_pb2.CreateChallengeRequest, context: Context
    ) -> apikeys_pb2.CreateChallengeResponse:
        challenge = await self._use_cases.create_challenge(request.wallet_address)
        return apikeys_pb2.CreateChallengeResponse(challenge=challenge_message(challenge))

    async def CreateAPIKeyWithSignature(
        self, request: apikeys_pb2.CreateAPIKeyWithSignatureRequest, context: Context
    ) -> apikeys_pb2.CreateAPIKeyWithSignatureResponse:
        issued = await self._use_cases.create_key_with_signature(
            request.wallet_address,
            request.challenge_id,
            request.pub_key,
            request.signature,
            request.name,
            _expires_days(request),
        )
        return apikeys_pb2.CreateAPIKeyWithSignatureResponse(
            api_key=self._key_message(issued.api_key), secret=issued.secret
        )

    def _key_message(self, key: APIKey) -> apikeys_pb2.APIKey:
        message = apikeys_pb2.APIKey(
            key_id=key.key_id,
            wallet_address=key.wallet_address,
            name=key.name,
            key_prefix=key.key_prefix,
            state=_STATES[key.state_at(self._clock())],
            create_time=timestamp(key.create_time),
        )
        for field, moment in (
            ("expire_time", key.expire_time),
            ("revoke_time", key.revoke_time),
            ("last_used_time", key.last_used_time),
        ):
            if moment is not None:
                getattr(message, field).CopyFrom(timestamp(moment))
        return message


def challenge_message(challenge: Challenge) -> apikeys_pb2.Challenge:
    return apikeys_pb2.Challenge(
        challenge_id=challenge.challenge_id,
        wallet_address=challenge.wallet_address,
        message=challenge.message,
        create_time=timestamp(challenge.create_time),
        expire_time=timestamp(challenge.expire_time),
    )


def _expires_days(
    request: apikeys_pb2.CreateAPIKeyRequest | apikeys_pb2.CreateAPIKeyWithSignatureRequest,
) -> int | None:
    return request.expires_days if request.HasField("expires_days") else None
