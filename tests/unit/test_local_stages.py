"""The local model's stages on their own: synthesis, endpointing, the backlog of speech,
sentence splitting."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import anyio
import pytest

from app.models.local.backlog import Backlog
from app.models.local.endpointer import Endpointer, Mark
from app.models.local.recognizer import DecoderPool, Recognizer
from app.models.local.rules import RulesBrain
from app.models.local.synthesizer import DEFAULT_VOICE, ESPEAK_RATE, Synthesizer, espeak_voice
from app.models.local.text import split_sentences, unshown_words
from tests.decoders import HeldPool
from tests.speech import frames, noise, rms, silence, speech

pytestmark = pytest.mark.anyio


async def test_synthesizer_speaks_from_the_bundled_library() -> None:
    pcm = await Synthesizer("matthew", 165).synthesize("Twelve times seven is eighty four.")
    seconds = len(pcm) / 2 / ESPEAK_RATE
    assert 1.0 < seconds < 4.0
    assert rms(pcm) > 500


@pytest.mark.parametrize(
    ("voice", "espeak"),
    [("matthew", "en-us"), ("Tiffany", "en-us+f3"), ("amy", "en+f2"), ("en-gb-scotland", "en-gb-scotland")],
)
def test_voice_mapping(voice: str, espeak: str) -> None:
    assert espeak_voice(voice) == espeak


def test_unknown_voice_falls_back_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        assert espeak_voice("hal9000") == DEFAULT_VOICE
    assert "unknown voice 'hal9000'" in caplog.text


async def test_endpointer_marks_one_utterance_after_the_silence_window() -> None:
    utterance = silence(0.5) + await speech("good morning") + silence(1.0)
    endpointer = Endpointer(silence_ms=500)
    marks, speech_bytes = [], 0
    for offset in range(0, len(utterance), 640):
        for mark, data in endpointer.feed(utterance[offset : offset + 640]):
            marks.append(mark) if mark is not Mark.SPEECH else None
            speech_bytes += len(data)
    assert marks == [Mark.START, Mark.END]
    assert speech_bytes >= len(await speech("good morning")) * 0.8
    assert not endpointer.in_speech


def test_silence_is_not_speech() -> None:
    endpointer = Endpointer(silence_ms=500)
    assert endpointer.feed(silence(2.0)) == []


def test_endpointer_ends_an_utterance_at_its_bound_and_goes_on() -> None:
    # Noise is speech that never ends to the VAD: the bound cuts it into utterances.
    endpointer = Endpointer(silence_ms=500, max_utterance_s=1.0)
    marks: list[Mark] = []
    lengths: list[int] = []  # speech bytes of each utterance
    for chunk in frames(noise(4.0)):
        for mark, data in endpointer.feed(chunk):
            if mark is Mark.SPEECH:
                lengths[-1] += len(data)
                continue
            marks.append(mark)
            lengths += [0] if mark is Mark.START else []
    assert marks[:5] == [Mark.START, Mark.END] * 2 + [Mark.START]
    assert all(length <= 16000 * 2 for length in lengths)  # a second of speech at most
    assert endpointer.in_speech
    assert [mark for mark, _ in endpointer.cut()] == [Mark.END]  # the listener's bound by the clock
    assert [mark for mark, _ in endpointer.feed(noise(0.1))][:1] == [Mark.START]


async def test_endpointer_flush_ends_an_utterance_whose_audio_stopped() -> None:
    # A recording sent with no silence after it: the endpointer alone would wait for more.
    said = await speech("good morning")
    endpointer = Endpointer(silence_ms=500)
    marks = [mark for mark, _ in endpointer.feed(silence(0.3) + said)]
    assert Mark.END not in marks
    tail = endpointer.flush()
    assert [mark for mark, _ in tail] == [Mark.SPEECH, Mark.END]  # with what the window held
    assert not endpointer.in_speech
    marks = [mark for mark, _ in endpointer.feed(silence(0.3) + said + silence(1.0))]
    assert [mark for mark in marks if mark is not Mark.SPEECH] == [Mark.START, Mark.END]


async def test_backlog_drops_only_speech_that_waited_a_whole_bound(caplog: pytest.LogCaptureFixture) -> None:
    backlog = Backlog(limit=8, max_wait=0.2)
    backlog.start()
    await backlog.add(b"old!" * 2)
    backlog.end()
    backlog.start()
    with anyio.fail_after(5), caplog.at_level(logging.WARNING):
        await backlog.add(b"new!")  # full: room only once the oldest has waited 0.2 s
    assert "dropped" in caplog.text
    assert backlog.size == 4
    with backlog.decoding():
        assert await backlog.take() == b"new!"


async def test_backlog_waits_for_room_while_decoding() -> None:
    backlog = Backlog(limit=8, max_wait=0.0)  # dropping would be immediate
    backlog.start()
    await backlog.add(b"one!" * 2)
    backlog.end()
    backlog.start()
    added = anyio.Event()

    async def add() -> None:
        await backlog.add(b"two!")
        added.set()

    with backlog.decoding(), anyio.fail_after(5):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(add)
            await anyio.wait_all_tasks_blocked()
            assert not added.is_set()  # this session's own decoding sets the pace: nothing dropped
            assert await backlog.take() == b"one!" * 2
        assert await backlog.take() is None  # the first utterance, all taken
        assert await backlog.take() == b"two!"


@pytest.mark.parametrize(
    ("buffer", "final", "sentences", "rest"),
    [
        ("Hello there. How are", False, ["Hello there."], "How are"),
        ("Hello there. How are", True, ["Hello there.", "How are"], ""),
        ("One! Two? Three.", False, ["One!", "Two?"], "Three."),
    ],
    ids=["partial", "final", "marks"],
)
def test_split_sentences(buffer: str, final: bool, sentences: list[str], rest: str) -> None:
    done, left = split_sentences(buffer, final)
    assert done == [s.strip() for s in sentences]
    assert left.strip() == rest.strip()


def test_long_text_without_punctuation_is_cut_at_spaces() -> None:
    text = "word " * 120
    done, left = split_sentences(text, final=False)
    assert len(done) == 2
    assert all(len(s) <= 240 for s in done)
    assert " ".join([*done, left.strip()]).split() == text.split()


@pytest.mark.parametrize(
    ("shown", "final", "rest"),
    [
        ("what is", "what is twelve times seven", "twelve times seven"),
        ("square root of", "the square root of ninety one", "ninety one"),
        ("what is twelve times", "what is twelve", ""),
        ("", "good morning", "good morning"),
        ("what's", "what time is it", "what time is it"),
    ],
)
def test_final_transcript_continues_what_was_shown(shown: str, final: str, rest: str) -> None:
    assert unshown_words(shown.split(), final.split()) == rest.split()


async def test_one_sessions_noise_does_not_spoil_the_next_sessions_recognition() -> None:
    pool = DecoderPool(1, grammar=RulesBrain().grammar())  # so both borrow the same decoder
    noisy, speaker = Recognizer(pool), Recognizer(pool)
    with anyio.fail_after(20):
        await noisy.begin()
        await noisy.feed(noise(15.0))  # an utterance cut at the bound, as noise is
        await noisy.finish()
        await speaker.begin()
        await speaker.feed(await speech("what time is it in tokyo"))
        heard = await speaker.finish()
    assert heard == "what time is it in tokyo"  # not "": the noise's channel stayed with its session


async def test_a_decoder_busy_at_shutdown_does_not_break_the_closed_pool() -> None:
    # A session cancelled mid-recognition hands its decoder back only once the job is
    # done; if the app shuts the pool down first, that hand-back must not fail.
    loop = asyncio.get_running_loop()
    failures: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _, context: failures.append(context))  # callbacks' errors
    try:
        pool = HeldPool(1)
        recognizer = Recognizer(pool)
        await recognizer.begin()
        async with anyio.create_task_group() as session:
            try:
                session.start_soon(recognizer.feed, await speech("good morning, how are you today"))
                with anyio.fail_after(10):
                    await pool.feeding.wait()  # the job runs in its thread
                session.cancel_scope.cancel()  # the session ends mid-recognition...
                pool.close()  # ...while the app shuts down
            finally:
                pool.go.set()
        await recognizer.cancel()  # the hand-back, to a closed pool
    finally:
        loop.set_exception_handler(previous)
    assert [context.get("exception") for context in failures] == []
    assert (pool.lent, pool.early) == (0, [])
    with pytest.raises(RuntimeError):  # closed: the pool takes no more work
        await pool.run(len, b"")
