"""ADR-036 signArbitrary verification against vectors made outside this code: one produced by
Keplr (cosmos prefix), and one computed with the pure-Python `ecdsa` library and hard-coded."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import bech32
import pytest
from ecdsa import SECP256k1, SigningKey
from ecdsa.util import sigencode_string_canonize

from services.apikeys import wallet_proof
from services.core.validators import wallet_payload
from tests.integration.apikeys_support import high_s

# Published with Keplr's verifyADR36Amino example: the signer signs its own address.
KEPLR_SIGNER = "cosmos1m9l358xunhhwds0568za49mzhvuxx9uxre5tud"
KEPLR_PUB_KEY = base64.b64decode("A/MdHVpitzHNSdD1Zw3kY+L5PEIPyd9l6sD5i4aIfXp9")
KEPLR_SIGNATURE = base64.b64decode(
    "vb78/y129cOiWyQkeFF8wCKZsOyzjpILnpEVZ72o5YUhEOmQZzVPcbUqWPLR7aZQ20j6vnYhIuCQN0HEG3igFg=="
)

# A fixed key, and what `ecdsa` (RFC 6979 nonces, low S) made of it, written down once.
VECTOR_PRIVATE_KEY = bytes.fromhex(
    "21970b16d3f5ffaa0211b74faa32e25317db9e5ae2932242b0273c46f63a4a4c"
)
VECTOR_PUB_KEY = bytes.fromhex("02fca86c5041ce52dd2c36f40c6a28cd30f3199b2b63c8c17eacd634520f59cf61")
VECTOR_WALLET = "remes1nmxc98ww6mdvm6h4anee0pxa8cgdezfclgsdxk"
VECTOR_MESSAGE = (
    "Sign in to R3MES to create an API key.\n"
    f"Wallet: {VECTOR_WALLET}\n"
    "Nonce: fixed-nonce\n"
    "Expires: 2026-01-15T12:05:00Z"
)
VECTOR_SIGN_DOC = (
    '{"account_number":"0","chain_id":"","fee":{"amount":[],"gas":"0"},"memo":"",'
    '"msgs":[{"type":"sign/MsgSignData","value":{"data":"U2lnbiBpbiB0byBSM01FUyB0byBjcmVhdGUgYW4g'
    "QVBJIGtleS4KV2FsbGV0OiByZW1lczFubXhjOTh3dzZtZHZtNmg0YW5lZTBweGE4Y2dkZXpmY2xnc2R4awpOb25jZTo"
    'gZml4ZWQtbm9uY2UKRXhwaXJlczogMjAyNi0wMS0xNVQxMjowNTowMFo=","signer":"'
    f'{VECTOR_WALLET}"}}}}],"sequence":"0"}}'
)
VECTOR_SIGNATURE = base64.b64decode(
    "O6NM0h1+jAupqPb4dY4TbAOwj/mj6SP451qGYKqg5osUPWMuux7+5WliLQNTlYn0j7EbCr0deQggzY/i6oJ5aw=="
)


def test_a_signature_keplr_made_is_accepted() -> None:
    assert wallet_proof.verify_sign_arbitrary(
        KEPLR_SIGNER, KEPLR_SIGNER.encode(), KEPLR_PUB_KEY, KEPLR_SIGNATURE
    )


def test_keplrs_public_key_hashes_to_its_address() -> None:
    _, words = bech32.bech32_decode(KEPLR_SIGNER)
    assert words is not None
    account = bech32.convertbits(words, 5, 8, False)
    assert account is not None
    assert wallet_proof.account_of(KEPLR_PUB_KEY) == bytes(account)


def test_the_sign_doc_is_byte_for_byte_the_amino_json_keplr_signs() -> None:
    assert wallet_proof.sign_doc(VECTOR_WALLET, VECTOR_MESSAGE.encode()) == VECTOR_SIGN_DOC.encode()


def test_the_fixed_vector_is_what_an_independent_signer_makes() -> None:
    key = SigningKey.from_string(VECTOR_PRIVATE_KEY, curve=SECP256k1)
    signature = key.sign_deterministic(
        VECTOR_SIGN_DOC.encode(), hashfunc=hashlib.sha256, sigencode=sigencode_string_canonize
    )

    assert key.get_verifying_key().to_string("compressed") == VECTOR_PUB_KEY
    assert signature == VECTOR_SIGNATURE
    assert wallet_proof.account_of(VECTOR_PUB_KEY) == wallet_payload(VECTOR_WALLET)


def test_the_fixed_vector_is_accepted() -> None:
    assert wallet_proof.verify_sign_arbitrary(
        VECTOR_WALLET, VECTOR_MESSAGE.encode(), VECTOR_PUB_KEY, VECTOR_SIGNATURE
    )


def test_a_signature_of_other_data_or_by_another_signer_is_refused() -> None:
    assert not wallet_proof.verify_sign_arbitrary(
        VECTOR_WALLET, (VECTOR_MESSAGE + " ").encode(), VECTOR_PUB_KEY, VECTOR_SIGNATURE
    )
    assert not wallet_proof.verify_sign_arbitrary(
        KEPLR_SIGNER, VECTOR_MESSAGE.encode(), VECTOR_PUB_KEY, VECTOR_SIGNATURE
    )
    assert not wallet_proof.verify_sign_arbitrary(
        VECTOR_WALLET, VECTOR_MESSAGE.encode(), KEPLR_PUB_KEY, VECTOR_SIGNATURE
    )


def test_the_high_s_twin_of_a_valid_signature_is_refused() -> None:
    assert not wallet_proof.verify_sign_arbitrary(
        VECTOR_WALLET, VECTOR_MESSAGE.encode(), VECTOR_PUB_KEY, high_s(VECTOR_SIGNATURE)
    )


def test_a_signature_with_r_or_s_out_of_range_is_refused_not_an_error() -> None:
    assert not wallet_proof.verify_sign_arbitrary(
        VECTOR_WALLET, VECTOR_MESSAGE.encode(), VECTOR_PUB_KEY, b"\xff" * 64
    )


def test_only_a_compressed_point_of_the_curve_is_a_public_key() -> None:
    assert wallet_proof.is_public_key(VECTOR_PUB_KEY)
    assert not wallet_proof.is_public_key(VECTOR_PUB_KEY[1:])
    assert not wallet_proof.is_public_key(b"\x04" + VECTOR_PUB_KEY[1:])
    assert not wallet_proof.is_public_key(b"\x02" + b"\xff" * 32)


def test_addresses_are_right_where_hashlib_has_no_ripemd160(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    openssl_new = hashlib.new

    def without_ripemd160(name: str, data: bytes = b"") -> Any:
        if name == "ripemd160":
            raise ValueError("unsupported hash type ripemd160")
        return openssl_new(name, data)

    monkeypatch.setattr(hashlib, "new", without_ripemd160)

    assert wallet_proof.account_of(VECTOR_PUB_KEY) == wallet_payload(VECTOR_WALLET)
