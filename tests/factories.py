"""Test data that is valid by construction."""

from __future__ import annotations

import os

import bech32


def new_wallet_address() -> str:
    """A fresh, valid `remes` address (a random 20-byte account)."""
    data = bech32.convertbits(os.urandom(20), 8, 5)
    assert data is not None
    address: str = bech32.bech32_encode("remes", data)
    return address
