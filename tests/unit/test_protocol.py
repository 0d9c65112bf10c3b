from __future__ import annotations

import base64

import pytest

from app.errors import ProtocolError
from app.wire.inbound import END, PING, AudioEncoding, AudioIn, Parser, TextIn, parse_connect_options


@pytest.fixture
def parser() -> Parser:
    return Parser(input_sample_rate=16000, max_message_bytes=4096, max_text_chars=20)


def test_binary_frame_is_audio(parser: Parser) -> None:
    assert parser.binary(b"\x01\x00\x02\x00") == AudioIn(b"\x01\x00\x02\x00")


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        ('{"type":"text","text":"hi"}', TextIn("hi")),
        ('{"text":"hi"}', TextIn("hi")),
        ('{"type":"ping"}', PING),
        ('{"type":"end"}', END),
        ('{"audio":"AAA="}', AudioIn(b"\x00\x00")),
        (
            '{"type":"audio","audio":"AAA=","sample_rate":16000,"format":"pcm","channels":1}',
            AudioIn(b"\x00\x00"),
        ),
    ],
)
def test_valid_frames(parser: Parser, frame: str, expected: object) -> None:
    assert parser.text(frame) == expected


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("{", "invalid_json"),
        ('"text"', "invalid_message"),
        ('{"type":"shout"}', "unknown_type"),
        ('{"audio":"AAA=","text":"x"}', "invalid_message"),
        ('{"type":"audio","audio":7}', "invalid_message"),
        ('{"type":"audio","audio":"A"}', "invalid_base64"),
        ('{"type":"audio","audio":"AA=="}', "odd_byte_count"),
        ('{"type":"audio","audio":"AAA=","sample_rate":"16000"}', "unsupported_sample_rate"),
        ('{"type":"text","text":""}', "empty_text"),
        ('{"type":"text","text":"' + "x" * 21 + '"}', "text_too_long"),
    ],
)
def test_rejected_frames_have_specific_codes(parser: Parser, frame: str, code: str) -> None:
    with pytest.raises(ProtocolError) as info:
        parser.text(frame)
    assert info.value.code == code
    assert info.value.fatal is False
    assert info.value.to_wire() == {
        "type": "error",
        "code": code,
        "message": info.value.message,
        "fatal": False,
    }


def test_oversized_frame_is_fatal_1009(parser: Parser) -> None:
    big = base64.b64encode(bytes(4000)).decode()
    with pytest.raises(ProtocolError) as info:
        parser.text('{"audio":"' + big + '"}')
    assert (info.value.code, info.value.fatal, info.value.close_code) == ("message_too_large", True, 1009)
    with pytest.raises(ProtocolError):
        parser.binary(bytes(4098))


def test_connect_options_default_to_model_rates() -> None:
    options = parse_connect_options({}, 16000, 24000)
    assert (options.input_sample_rate, options.output_sample_rate, options.audio) == (16000, 24000, "base64")
    options = parse_connect_options({"input_sample_rate": "48000", "audio": "binary"}, 16000, 24000)
    assert options.input_sample_rate == 48000
    assert options.audio is AudioEncoding.BINARY


def test_connect_rate_refused_with_allowed_values() -> None:
    with pytest.raises(ProtocolError) as info:
        parse_connect_options({"output_sample_rate": "96000"}, 16000, 24000)
    assert info.value.close_code == 1008
    assert "allowed values: 8000, 11025, 16000, 22050, 24000, 32000, 44100, 48000" in info.value.message


def test_text_frame_size_is_counted_in_utf8_bytes(parser: Parser) -> None:
    emoji = '{"text":"' + "\U0001f600" * 1100 + '"}'  # 1111 characters, 4411 bytes: over 4096
    assert len(emoji) < parser.max_message_bytes < len(emoji.encode())
    with pytest.raises(ProtocolError) as info:
        parser.text(emoji)
    assert (info.value.code, info.value.close_code) == ("message_too_large", 1009)
    assert "4411 bytes" in info.value.message
    # at the limit in bytes is fine (then judged on its own: too long for this parser)
    accents = '{"text":"' + "é" * 2042 + 'e"}'  # 2 * 2042 + 1 + 11 = 4096 bytes
    assert len(accents.encode()) == parser.max_message_bytes
    with pytest.raises(ProtocolError) as info:
        parser.text(accents)
    assert info.value.code == "text_too_long"


def test_lone_surrogate_text_is_refused_before_any_model(parser: Parser) -> None:
    for frame in ('{"text":"\\ud800"}', '{"type":"text","text":"hi \\udfff"}'):
        with pytest.raises(ProtocolError) as info:
            parser.text(frame)
        assert (info.value.code, info.value.fatal) == ("invalid_text", False)
    assert parser.text('{"text":"\\ud83d\\ude00"}') == TextIn("\U0001f600")  # a pair is one character


def test_deeply_nested_json_is_invalid_json_not_a_crash() -> None:
    parser = Parser(input_sample_rate=16000, max_message_bytes=1_048_576, max_text_chars=20)
    with pytest.raises(ProtocolError) as info:
        parser.text("[" * 100_000)
    assert (info.value.code, info.value.fatal) == ("invalid_json", False)


@pytest.mark.parametrize(
    "frame",
    [
        '{"type":"' + "x" * 3000 + '"}',
        '{"type":' + "[" * 500 + "]" * 500 + "}",
        '{"type":"audio","audio":"AAA=","sample_rate":"' + "9" * 3000 + '"}',
        '{"type":"audio","audio":"AAA=","format":"' + "f" * 3000 + '"}',
    ],
)
def test_error_messages_do_not_echo_client_sized_values(parser: Parser, frame: str) -> None:
    with pytest.raises(ProtocolError) as info:
        parser.text(frame)
    assert len(info.value.message) < 150
