"""Framing: every valid frame comes through, garbage is counted, nothing crashes."""

import contextlib
import json
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgewatch.agent.framing import (
    CRC_WORK,
    LATEST_TS,
    MAX_PAYLOAD,
    MAX_RATE,
    MIN_RATE,
    SYNC,
    CsvLineDecoder,
    FrameDecoder,
    FrameError,
    crc16,
    decode_block,
    decode_json,
    encode_block,
    encode_frame,
)

finite32 = st.floats(-1e6, 1e6, width=32)


@st.composite
def blocks(draw):
    channels = draw(st.integers(1, 4))
    n = draw(st.integers(1, 40))
    values = draw(st.lists(finite32, min_size=channels * n, max_size=channels * n))
    samples = np.array(values, dtype=np.float32).reshape(channels, n)
    device = draw(st.text(st.characters(codec="utf-8"), min_size=1, max_size=20))
    return device, samples


@given(blocks(), st.floats(0, 2e9), st.floats(1, 1e6))
def test_float_blocks_round_trip_exactly(block, ts, rate):
    device, samples = block
    decoded = decode_block(encode_block(device, ts, rate, samples))
    assert decoded.device == device and decoded.ts == ts
    assert decoded.sample_rate == np.float32(rate)
    np.testing.assert_array_equal(decoded.samples, samples)


def test_int16_blocks_carry_counts_of_a_scale():
    samples = np.array([[0.0, 0.5, -1.0, 100.0]], dtype=np.float32)
    decoded = decode_block(encode_block("acc", 1.0, 1000.0, samples, scale=0.5))
    np.testing.assert_array_equal(decoded.samples, samples)
    clipped = decode_block(encode_block("acc", 1.0, 1000.0, samples * 1e6, scale=0.5))
    assert clipped.samples.max() == 32767 * 0.5


@given(st.lists(blocks(), min_size=1, max_size=5), st.data())
@settings(max_examples=60)
def test_frames_survive_any_chunking_and_any_garbage_between_them(items, data):
    frames = [
        encode_frame(i, encode_block(d, float(i), 100.0, s)) for i, (d, s) in enumerate(items)
    ]
    noise = data.draw(st.lists(st.binary(max_size=30), min_size=len(frames), max_size=len(frames)))
    stream = b"".join(g.replace(SYNC, b"") + f for g, f in zip(noise, frames, strict=True))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    decoder = FrameDecoder()
    out = []
    for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        out += decoder.feed(stream[a:b])
    assert [b.sequence for b in out] == list(range(len(items)))
    for block, (device, samples) in zip(out, items, strict=True):
        assert block.device == device
        np.testing.assert_array_equal(block.samples, samples)
    assert decoder.counts.accepted == len(items) and decoder.counts.gaps == 0
    assert decoder.counts.garbage_bytes == sum(len(g.replace(SYNC, b"")) for g in noise)
    assert decoder.counts.rejected["garbage"] <= sum(1 for g in noise if g.replace(SYNC, b""))


@given(st.binary(max_size=400))
def test_garbage_never_raises_and_is_all_counted(raw):
    decoder = FrameDecoder()
    blocks_out = decoder.feed(raw) + decoder.feed(b"")
    assert all(b.samples.ndim == 2 for b in blocks_out)
    assert decoder.counts.accepted == len(blocks_out)


def test_corrupt_truncated_and_oversized_frames_are_refused_by_reason():
    good = encode_frame(7, encode_block("pump", 0.0, 10.0, np.ones((1, 4), np.float32)))
    flipped = bytearray(good)
    flipped[12] ^= 0x40
    oversized = SYNC + (MAX_PAYLOAD + 1).to_bytes(2, "little") + bytes(4)
    decoder = FrameDecoder()
    out = decoder.feed(bytes(flipped) + oversized + good[:-3])
    assert out == [] and decoder.counts.rejected["crc"] == 1
    assert decoder.counts.rejected["oversized"] == 1
    out = decoder.feed(good[-3:] + good)
    assert [b.sequence for b in out] == [7, 7] and decoder.counts.gaps == 1


def test_sequence_gaps_are_counted_and_wrap_around():
    payload = encode_block("pump", 0.0, 10.0, np.ones((1, 2), np.float32))
    decoder = FrameDecoder()
    decoder.feed(b"".join(encode_frame(s, payload) for s in (0xFFFFFFFE, 0xFFFFFFFF, 0, 5)))
    assert decoder.counts.accepted == 4 and decoder.counts.gaps == 1


def test_a_frame_with_a_valid_crc_but_a_bad_block_is_refused():
    frame = encode_frame(1, b"EW" + bytes(30))
    decoder = FrameDecoder()
    assert decoder.feed(frame) == [] and decoder.counts.rejected["bad_header"] == 1
    assert crc16(b"123456789") == 0x29B1


def huge_scale() -> bytes:
    """An int16 block of 1000 counts, each worth 3e38: beyond float32 once scaled."""
    block = bytearray(encode_block("d", 0, 1, np.full((1, 1), 1000.0, np.float32), scale=1.0))
    block[20:24] = struct.pack("<f", 3e38)
    return bytes(block)


@pytest.mark.parametrize(
    "payload, reason",
    [
        (b"EW", "truncated"),
        (b"XX" + bytes(30), "bad_header"),
        (encode_block("d", 0, 1, np.ones((2, 3), np.float32))[:-1], "bad_length"),
        (encode_block("d", 0, 1, np.array([[np.nan]], np.float32)), "not_finite"),
        (encode_block("d", 0, -1, np.ones((1, 1), np.float32)), "bad_rate"),
        (encode_block("d", 0, 1e-9, np.ones((1, 1), np.float32)), "bad_rate"),
        (encode_block("d", 1e12, 1, np.ones((1, 1), np.float32)), "bad_time"),
        (encode_block("d", -1, 1, np.ones((1, 1), np.float32)), "bad_time"),
        (encode_block("d", np.nan, 1, np.ones((1, 1), np.float32)), "bad_time"),
        (encode_block("d", 0, 1, np.ones((1, 1), np.float32), scale=np.inf), "bad_header"),
        (huge_scale(), "not_finite"),
    ],
)
def test_bad_blocks_name_their_fault(payload, reason):
    with pytest.raises(FrameError) as caught:
        decode_block(payload)
    assert caught.value.reason == reason


def test_csv_lines_in_pieces_with_bad_lines_counted():
    decoder = CsvLineDecoder(3)
    rows = decoder.feed(b"1,2,3\n4,5")
    rows2 = decoder.feed(b",6\r\n7,8\nx,1,2\n1,2,inf\n1e39,0,0\n\n" + b"9" * 5000 + b"\n10,11,12\n")
    assert rows.tolist() == [[1, 2, 3]] and rows2.tolist() == [[4, 5, 6], [10, 11, 12]]
    assert decoder.counts.rejected == {
        "wrong_field_count": 1,
        "not_a_number": 1,
        "not_finite": 2,
        "too_long": 1,
    }
    assert decoder.counts.accepted == 3


def test_an_overlong_line_is_refused_whole_even_across_pieces():
    decoder = CsvLineDecoder(1)
    pieces = [b"1\n" + b"2" * 3000, b"2" * 3000, b"2" * 3000 + b"5\n", b"6\n"]
    rows = [decoder.feed(piece).ravel().tolist() for piece in pieces]
    assert rows == [[1.0], [], [], [6.0]]
    assert decoder.counts.rejected == {"too_long": 1}


@given(st.binary(max_size=300))
def test_csv_garbage_never_raises(raw):
    rows = CsvLineDecoder(2).feed(raw)
    assert rows.shape[1] == 2 and np.isfinite(rows).all()


def test_json_messages_and_their_faults():
    message = {
        "device": "fan",
        "ts": 5,
        "sample_rate": 100,
        "channels": ["x", "y"],
        "values": [[1, 2, 3], [4, 5, 6]],
    }
    block = decode_json(json.dumps(message).encode())
    assert block.channels == ("x", "y") and block.samples.shape == (2, 3) and block.ts == 5.0
    for change, reason in [
        ({"values": [[1, 2], [3]]}, "bad_length"),
        ({"values": [[1, 2]]}, "bad_length"),
        ({"values": [[], []]}, "bad_length"),
        ({"values": [[1e39], [1]]}, "not_finite"),
        ({"values": [[10**400], [1]]}, "not_finite"),
        ({"values": [["1.5"], [1]]}, "bad_json"),
        ({"values": [[True], [1]]}, "bad_json"),
        ({"values": [[1, 2], [3, False]]}, "bad_json"),
        ({"values": [[None], [1]]}, "bad_json"),
        ({"values": [[[1]], [[1]]]}, "bad_json"),
        ({"sample_rate": 0}, "bad_rate"),
        ({"sample_rate": 10**400}, "bad_rate"),
        ({"ts": True}, "bad_json"),
        ({"ts": "5"}, "bad_json"),
        ({"ts": int("1" * 400)}, "bad_time"),
        ({"ts": 1e12}, "bad_time"),
        ({"ts": -1}, "bad_time"),
        ({"device": ""}, "bad_json"),
        ({"device": "d" * 256}, "bad_json"),
        ({"channels": "x"}, "bad_json"),
        ({"channels": ["x", ""]}, "bad_json"),
    ]:
        with pytest.raises(FrameError) as caught:
            decode_json(json.dumps({**message, **change}).encode())
        assert caught.value.reason == reason, change
    deep = b"[" * 100_000 + b"]" * 100_000
    digits = b'{"ts": ' + b"1" * 5000 + b"}"
    for raw in (b"{", b"[1]", b'{"device": "x"}', b"\xff", deep, digits, b"\x00"):
        with pytest.raises(FrameError, match=r"JSON|missing|object") as caught:
            decode_json(raw)
        assert caught.value.reason == "bad_json"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=12,
)


@given(
    st.dictionaries(
        st.sampled_from(["device", "ts", "sample_rate", "channels", "values"]), json_values
    )
)
@settings(max_examples=300)
def test_any_json_message_is_a_valid_block_or_a_frame_error(fields):
    message = {
        "device": "fan",
        "ts": 5,
        "sample_rate": 100,
        "channels": ["x"],
        "values": [[1, 2, 3]],
        **fields,
    }
    try:
        block = decode_json(json.dumps(message).encode())
    except FrameError:
        return
    assert 0 <= block.ts < LATEST_TS and MIN_RATE <= block.sample_rate <= MAX_RATE
    assert block.samples.dtype == np.float32 and np.isfinite(block.samples).all()
    assert block.samples.shape == (len(block.channels), block.samples.shape[1])


@given(st.binary(max_size=200))
def test_json_garbage_is_always_a_frame_error(raw):
    with contextlib.suppress(FrameError):
        decode_json(raw)


def test_a_flood_of_sync_words_promising_long_frames_costs_bounded_work():
    # Every four bytes a sync word and a length of 60,000: each a frame candidate.
    flood = (SYNC + MAX_PAYLOAD.to_bytes(2, "little")) * 100_000
    good = encode_frame(9, encode_block("pump", 0.0, 10.0, np.ones((1, 4), np.float32)))
    decoder = FrameDecoder()
    out = []
    for at in range(0, len(flood), 4096):
        out += decoder.feed(flood[at : at + 4096])
    out += decoder.feed(bytes(MAX_PAYLOAD))
    received = len(flood) + MAX_PAYLOAD
    checked = decoder.counts.rejected["crc"] * MAX_PAYLOAD
    assert checked <= CRC_WORK * received + CRC_WORK * (MAX_PAYLOAD + 10)
    assert decoder.counts.rejected["flood"] > 10_000 and out == []
    # Once the flood stops, frames come through again.
    assert [b.sequence for b in decoder.feed(good)] == [9]
