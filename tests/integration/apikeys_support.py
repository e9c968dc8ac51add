"""What the API-key tests share: calling as internal or as a key, and issuing keys."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import TYPE_CHECKING, TypeAlias

import bech32
from coincurve import PrivateKey
from coincurve.ecdsa import der_to_cdata, serialize_compact
from r3mes.apikeys.v1 import apikeys_pb2

from tests.conftest import INTERNAL_TOKEN

if TYPE_CHECKING:
    from r3mes.apikeys.v1 import apikeys_pb2_grpc

    Stub: TypeAlias = apikeys_pb2_grpc.APIKeysServiceAsyncStub

INTERNAL = (("x-r3mes-internal-token", INTERNAL_TOKEN),)


def as_key(secret: str) -> tuple[tuple[str, str], ...]:
    return (("x-api-key", secret),)


def as_bearer(secret: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {secret}"),)


async def issue_key(
    stub: Stub, wallet: str, name: str = "laptop", expires_days: int | None = None
) -> apikeys_pb2.CreateAPIKeyResponse:
    """A key made on internal authority (as an operator would), for tests that need one."""
    request = apikeys_pb2.CreateAPIKeyRequest(wallet_address=wallet, name=name)
    if expires_days is not None:
        request.expires_days = expires_days
    response: apikeys_pb2.CreateAPIKeyResponse = await stub.CreateAPIKey(request, metadata=INTERNAL)
    return response


async def validate(stub: Stub, secret: str) -> apikeys_pb2.ValidateAPIKeyResponse:
    response: apikeys_pb2.ValidateAPIKeyResponse = await stub.ValidateAPIKey(
        apikeys_pb2.ValidateAPIKeyRequest(secret=secret), metadata=INTERNAL
    )
    return response


SECP256K1_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


class SigningWallet:
    """A real secp256k1 wallet that signs as Keplr's signArbitrary does. The sign doc is written
    out here, apart from the service's own, so the two are checked against each other."""

    def __init__(self, private_key: bytes | None = None) -> None:
        self._key = PrivateKey(private_key)
        self.pub_key = self._key.public_key.format(compressed=True)
        account = hashlib.new("ripemd160", hashlib.sha256(self.pub_key).digest()).digest()
        words = bech32.convertbits(account, 8, 5)
        assert words is not None
        self.address: str = bech32.bech32_encode("remes", words)

    def sign_arbitrary(self, data: str, signer: str | None = None) -> bytes:
        document = {
            "chain_id": "",
            "account_number": "0",
            "sequence": "0",
            "fee": {"gas": "0", "amount": []},
            "msgs": [
                {
                    "type": "sign/MsgSignData",
                    "value": {
                        "signer": signer or self.address,
                        "data": base64.b64encode(data.encode()).decode(),
                    },
                }
            ],
            "memo": "",
        }
        signed = json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
        compact: bytes = serialize_compact(der_to_cdata(self._key.sign(signed)))
        return compact


def high_s(signature: bytes) -> bytes:
    """The same signature with S replaced by n - S: valid ECDSA, refused by Cosmos (malleable)."""
    s = int.from_bytes(signature[32:], "big")
    return signature[:32] + (SECP256K1_ORDER - s).to_bytes(32, "big")
