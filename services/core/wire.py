"""Conversions between Python values and protobuf's well-known types, shared by every servicer
and client so that each converts times the same way (always UTC-aware)."""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp


def timestamp(moment: datetime) -> Timestamp:
    """A Timestamp of an aware datetime (the instant, whatever its zone)."""
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def utc_datetime(stamp: Timestamp) -> datetime:
    """The UTC-aware datetime of a Timestamp."""
    return stamp.ToDatetime(tzinfo=UTC)
