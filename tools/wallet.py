"""A test wallet and its first API key in one command, through the gateway's REST API:

    python -m tools.wallet [--base http://127.0.0.1:8080] [--private-key HEX] [--name NAME]

It makes a secp256k1 key (or takes yours), asks for a challenge (CreateChallenge), signs it as
Keplr's `signArbitrary` does (ADR-036) and trades the signature for a key
(CreateAPIKeyWithSignature). It prints shell assignments, so `eval "$(python -m tools.wallet)"`
sets WALLET, API_KEY and PRIVATE_KEY; pass `--private-key $PRIVATE_KEY` to get another key for
the same wallet. The private key is printed because this is a throwaway wallet for trying the
API: never pass the key of a wallet that holds anything.
"""

from __future__ import annotations

import argparse
import base64
import sys
from dataclasses import dataclass
from typing import Any

import bech32
import httpx
from coincurve import PrivateKey
from coincurve.ecdsa import der_to_cdata, serialize_compact

from services.apikeys.wallet_proof import account_of, sign_doc
from services.core.validators import WALLET_HRP

DEFAULT_BASE = "http://127.0.0.1:8080"


@dataclass(frozen=True)
class Wallet:
    """A secp256k1 key and the `remes1...` address it controls."""

    private_key: PrivateKey

    @classmethod
    def new(cls, private_key_hex: str | None = None) -> Wallet:
        secret = bytes.fromhex(private_key_hex) if private_key_hex else None
        return cls(PrivateKey(secret))

    @property
    def pub_key(self) -> bytes:
        return bytes(self.private_key.public_key.format(compressed=True))

    @property
    def address(self) -> str:
        words = bech32.convertbits(account_of(self.pub_key), 8, 5)
        assert words is not None  # 8-to-5 bits with padding always converts
        return str(bech32.bech32_encode(WALLET_HRP, words))

    def sign_arbitrary(self, message: str) -> bytes:
        """64 bytes r||s over SHA-256 of the ADR-036 sign doc; libsecp256k1 signs with a low S."""
        der = self.private_key.sign(sign_doc(self.address, message.encode()))
        return bytes(serialize_compact(der_to_cdata(der)))


class RefusedError(Exception):
    """The API refused a step; str() is its status line and google.rpc.Status body."""


def _post(client: httpx.Client, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post(path, json=body)
    if response.status_code != httpx.codes.OK:
        raise RefusedError(f"POST {path}: {response.status_code} {response.text}")
    answer: dict[str, Any] = response.json()
    return answer


def first_api_key(client: httpx.Client, wallet: Wallet, name: str) -> str:
    """The two calls of docs/api.md, "Your first API key": a challenge, then its signature."""
    wallets = f"/v1/wallets/{wallet.address}"
    challenge = _post(client, f"{wallets}/challenges", {})["challenge"]
    created = _post(
        client,
        f"{wallets}/apikeys:createWithSignature",
        {
            "challenge_id": challenge["challenge_id"],
            "pub_key": base64.b64encode(wallet.pub_key).decode(),
            "signature": base64.b64encode(wallet.sign_arbitrary(challenge["message"])).decode(),
            "name": name,
        },
    )
    secret: str = created["secret"]
    return secret


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--base", default=DEFAULT_BASE, help="the gateway (default: %(default)s)")
    parser.add_argument("--private-key", help="hex key (default: a new one)")
    parser.add_argument("--name", default="tools.wallet", help="the key's name (%(default)s)")
    args = parser.parse_args(argv)
    wallet = Wallet.new(args.private_key)
    try:
        with httpx.Client(base_url=args.base, timeout=10.0) as client:
            secret = first_api_key(client, wallet, args.name)
    except (RefusedError, httpx.HTTPError) as error:
        raise SystemExit(f"tools.wallet: {error}") from None
    sys.stdout.write(
        f"WALLET={wallet.address}\nAPI_KEY={secret}\nPRIVATE_KEY={wallet.private_key.to_hex()}\n"
    )


if __name__ == "__main__":
    main()
