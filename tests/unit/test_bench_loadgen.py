"""The request path benchmark reads h2load's and wrk's reports right and frames gRPC messages as
the wire wants them (the reports below are real ones, long lines cut, from the versions that
`make bench-tools` installs)."""

from __future__ import annotations

import math

import pytest
from r3mes.users.v1 import users_pb2

from bench.loadgen import grpc_frame, parse_h2load, parse_wrk, percentile

H2LOAD_REPORT = """\
starting benchmark...
spawning thread #0: 4 total client(s). Timing-based test with 0s of warm-up time and 3s of ...
Application protocol: h2c
Main benchmark duration is over for thread #0. Stopping all clients.

finished in 3.00s, 2125.33 req/s, 230.11KB/s
requests: 6376 total, 6376 started, 6370 done, 6368 succeeded, 7 failed, 1 errored, 2 timeout
status codes: 6368 2xx, 0 3xx, 2 4xx, 4 5xx
traffic: 690.34KB (706904) total, 379.30KB (388400) headers (space savings 59.97%), ...
                     min         max         mean         sd        +/- sd
time for request:      888us     64.23ms      7.52ms      3.68ms    88.35%
"""

WRK_REPORT = """\
Running 3s test @ http://127.0.0.1:8080/v1/users/remes1abc
  1 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    65.10ms    5.20ms   1.20s    80.00%
    Req/Sec   245.00     20.00   300.00     70.00%
  Latency Distribution
     50%  850.00us
     75%   68.00ms
     90%   72.00ms
     99%    1.50s
  735 requests in 3.00s, 200.00KB read
  Socket errors: connect 1, read 2, write 0, timeout 3
  Non-2xx or 3xx responses: 5
Requests/sec:    245.12
Transfer/sec:     66.67KB
"""


def test_a_grpc_frame_is_a_zero_flag_a_big_endian_length_and_the_serialized_message() -> None:
    request = users_pb2.GetUserRequest(wallet_address="abc")

    frame = grpc_frame(request)

    assert frame == b"\x00\x00\x00\x00\x05" + b"\x0a\x03abc"
    assert users_pb2.GetUserRequest.FromString(frame[5:]) == request


def test_an_empty_message_is_framed_as_five_zero_bytes() -> None:
    assert grpc_frame(users_pb2.GetNetworkStatsRequest()) == b"\x00" * 5


def test_h2load_figures_come_from_its_summary_and_latencies_from_its_request_log() -> None:
    # start (us since the epoch), HTTP status, duration (us); failed streams are left out.
    request_log = "".join(
        f"1796147569{n:06d}\t{200 if n < 100 else 503}\t{(n + 1) * 1000}\n" for n in range(102)
    )

    result = parse_h2load(H2LOAD_REPORT, request_log)

    assert result.requests == 6370
    assert result.errors == 9  # 7 failed (errored ones included) + 2 timed out
    assert result.rps == 2125.33
    assert result.p50_ms == 50.0
    assert result.p99_ms == 99.0


def test_an_h2load_report_without_its_summary_is_refused_rather_than_read_as_zero() -> None:
    with pytest.raises(ValueError, match="req/s"):
        parse_h2load("requests: 0 total, 0 started, 0 done, 0 succeeded, 0 failed, 0 timeout", "")


def test_wrk_figures_convert_each_latency_unit_to_milliseconds() -> None:
    result = parse_wrk(WRK_REPORT)

    assert result.requests == 735
    assert result.rps == 245.12
    assert result.p50_ms == pytest.approx(0.85)
    assert result.p99_ms == 1500.0


def test_wrk_latencies_padded_with_spaces_to_the_column_width_are_read() -> None:
    # wrk pads "1.32s" to the width of "158.74ms".
    assert parse_wrk(WRK_REPORT.replace("1.50s\n", "1.50s \n")).p99_ms == 1500.0


def test_wrk_errors_are_non_2xx_replies_plus_every_kind_of_socket_error() -> None:
    assert parse_wrk(WRK_REPORT).errors == 5 + 1 + 2 + 0 + 3


def test_a_clean_wrk_run_has_no_errors() -> None:
    clean = "\n".join(
        line for line in WRK_REPORT.splitlines() if "errors" not in line and "Non-2xx" not in line
    )
    assert parse_wrk(clean).errors == 0


def test_a_wrk_report_without_latency_distribution_is_refused() -> None:
    without = WRK_REPORT.replace("Latency Distribution", "").replace("50%", "")
    with pytest.raises(ValueError, match="50% latency"):
        parse_wrk(without)


def test_the_percentile_is_the_nearest_rank_and_nan_when_nothing_was_measured() -> None:
    values = [float(n) for n in range(1, 11)]

    assert percentile(values, 0.5) == 5.0
    assert percentile(values, 0.99) == 10.0
    assert percentile(values, 0.0) == 1.0
    assert math.isnan(percentile([], 0.5))
