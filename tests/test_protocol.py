"""The wire format and the incremental decoders, independent of any socket."""

from __future__ import annotations

import itertools
import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from servers.protocol import (
    Limits,
    Op,
    Request,
    RequestDecoder,
    ResponseDecoder,
    Status,
    check_header,
    encode_request,
    encode_response,
    reply_for,
)

LIMITS = Limits(max_frame=4096, max_sleep_ms=100, max_work_us=100)


def test_byte_level_example_from_the_readme() -> None:
    frame = encode_request(Op.ECHO, 0, b"hi")
    assert frame.hex(" ") == "00 00 00 0b 01 00 00 00 00 00 00 00 00 68 69"
    assert encode_response(Status.OK, b"hi").hex(" ") == "00 00 00 03 00 68 69"
    assert encode_request(Op.SLEEP, 20).hex(" ") == "00 00 00 09 02 00 00 00 14 00 00 00 00"


def test_reply_len_gives_a_body_of_that_size() -> None:
    assert reply_for(Request(Op.ECHO, 0, 3, b"payload")) == struct.pack("!IB", 4, 0) + bytes(3)
    assert reply_for(Request(Op.WORK, 5, 0, b"p")) == struct.pack("!IB", 2, 0) + b"p"


def test_check_header_caps() -> None:
    assert check_header(9, Op.ECHO, 0, 0, LIMITS) == Status.OK
    assert check_header(8, Op.ECHO, 0, 0, LIMITS) == Status.BAD_REQUEST
    assert check_header(9, 0, 0, 0, LIMITS) == Status.BAD_REQUEST
    assert check_header(4097, Op.ECHO, 0, 0, LIMITS) == Status.TOO_LARGE
    assert check_header(4096, Op.ECHO, 0, 4097, LIMITS) == Status.TOO_LARGE
    assert check_header(9, Op.SLEEP, 101, 0, LIMITS) == Status.OVER_LIMIT
    assert check_header(9, Op.WORK, 101, 0, LIMITS) == Status.OVER_LIMIT
    assert check_header(9, Op.ECHO, 10**9, 0, LIMITS) == Status.OK  # ECHO ignores arg


requests_st = st.builds(
    Request,
    op=st.sampled_from([int(op) for op in Op]),
    arg=st.integers(0, 100),
    reply_len=st.integers(0, 4096),
    payload=st.binary(max_size=300),
)


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds) if b > a]


@settings(max_examples=300)
@given(st.lists(requests_st, max_size=8), st.lists(st.integers(0, 10_000), max_size=20))
def test_decoder_any_chunking_gives_the_same_requests(requests: list[Request], cuts: list[int]) -> None:
    stream = b"".join(encode_request(r.op, r.arg, r.payload, r.reply_len) for r in requests)
    decoder = RequestDecoder(LIMITS)
    got: list[Request] = []
    for chunk in chunked(stream, cuts):
        got += decoder.feed(chunk)
    assert got == requests
    assert decoder.error is None and decoder.buffered == 0


@settings(max_examples=500)
@given(st.binary(max_size=3000), st.lists(st.integers(0, 3000), max_size=10))
def test_decoder_arbitrary_bytes_never_raise_and_stay_bounded(data: bytes, cuts: list[int]) -> None:
    decoder = RequestDecoder(LIMITS)
    reference = RequestDecoder(LIMITS)
    one_shot = reference.feed(data)
    got: list[Request] = []
    for chunk in chunked(data, cuts):
        got += decoder.feed(chunk)
        assert decoder.buffered <= LIMITS.max_frame + 4 + len(chunk)
        if decoder.error is not None:
            assert decoder.feed(b"more") == []
    # Chunking never changes what is decoded, nor where the stream went bad.
    assert got == one_shot and decoder.error == reference.error
    for r in got:
        assert check_header(9 + len(r.payload), r.op, r.arg, r.reply_len, LIMITS) == Status.OK


def test_decoder_stops_at_the_first_bad_frame_but_keeps_earlier_ones() -> None:
    good = encode_request(Op.ECHO, 0, b"ok")
    bad = struct.pack("!IBII", 0xFFFFFFFF, Op.ECHO, 0, 0)
    decoder = RequestDecoder(LIMITS)
    assert decoder.feed(good + bad + good) == [Request(Op.ECHO, 0, 0, b"ok")]
    assert decoder.error == Status.TOO_LARGE
    assert decoder.buffered == 0


@given(st.lists(st.tuples(st.integers(0, 3), st.binary(max_size=200)), max_size=6), st.lists(st.integers(0, 2000)))
def test_response_decoder_any_chunking(responses: list[tuple[int, bytes]], cuts: list[int]) -> None:
    stream = b"".join(encode_response(s, b) for s, b in responses)
    decoder = ResponseDecoder()
    got: list[tuple[int, bytes]] = []
    for chunk in chunked(stream, cuts):
        got += decoder.feed(chunk)
    assert got == responses
