"""Proof of wallet ownership: a Cosmos ADR-036 `signArbitrary` signature, checked as Keplr and
cosmjs make it.

The signed bytes are the amino JSON sign doc of one `sign/MsgSignData` message (keys sorted, no
whitespace; chain id empty, account number, sequence and gas "0", no fee, empty memo), whose
`data` is the base64 of the signed text and whose `signer` is the wallet. The signature is
secp256k1 ECDSA over the SHA-256 of those bytes, 64 bytes r||s with a low S (libsecp256k1
refuses a high S, as Cosmos does). The public key, 33 bytes compressed, must hash to the wallet:
bech32 of RIPEMD-160(SHA-256(pub_key)).

Only the sign doc is written here (json does it); the curve is libsecp256k1's (coincurve).
"""

from __future__ import annotations

import base64
import hashlib
import json

from coincurve import PublicKey
from coincurve.ecdsa import cdata_to_der, deserialize_compact

PUBLIC_KEY_BYTES = 33
SIGNATURE_BYTES = 64


def sign_doc(signer: str, data: bytes) -> bytes:
    """The ADR-036 sign doc, byte for byte as cosmjs's serializeSignDoc writes it. (cosmjs also
    escapes &, < and >; base64 and bech32 contain none of them.)"""
    document = {
        "account_number": "0",
        "chain_id": "",
        "fee": {"amount": [], "gas": "0"},
        "memo": "",
        "msgs": [
            {
                "type": "sign/MsgSignData",
                "value": {"data": base64.b64encode(data).decode(), "signer": signer},
            }
        ],
        "sequence": "0",
    }
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def ripemd160(data: bytes) -> bytes:
    try:
        return hashlib.new("ripemd160", data).digest()
    except ValueError:
        # OpenSSL 3 builds may leave RIPEMD-160 out of hashlib; pycryptodome has its own.
        from Crypto.Hash import RIPEMD160

        return RIPEMD160.new(data).digest()


def account_of(pub_key: bytes) -> bytes:
    """The 20-byte account a secp256k1 public key controls (Cosmos: RIPEMD-160 of SHA-256)."""
    return ripemd160(hashlib.sha256(pub_key).digest())


def is_public_key(pub_key: bytes) -> bool:
    """33 bytes, compressed (02/03), and a point of the curve."""
    if len(pub_key) != PUBLIC_KEY_BYTES or pub_key[0] not in (2, 3):
        return False
    try:
        PublicKey(pub_key)
    except ValueError:
        return False
    return True


def verify_sign_arbitrary(signer: str, data: bytes, pub_key: bytes, signature: bytes) -> bool:
    """Whether `signature` is `pub_key`'s ADR-036 signature of `data` by `signer`."""
    try:
        compact = deserialize_compact(signature)  # r or s out of range: ValueError
        return bool(PublicKey(pub_key).verify(cdata_to_der(compact), sign_doc(signer, data)))
    except ValueError:
        return False
