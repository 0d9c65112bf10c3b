"""`local`: the offline speech-to-speech model (`make run` needs no cloud account).

Stages, one module each: `endpointer` (pocketsphinx VAD), `recognizer` (pocketsphinx),
the brain (`LOCAL_BRAIN` picks one of app/extensions.py `BRAINS`), `synthesizer`
(espeak-ng), `model` (the BidiModel that joins them). Decoder pools, the brain and the
synthesizer are built once per app and shared by its sessions; each session gets its own
model and recognizer.
"""

from __future__ import annotations

from app.config import Settings
from app.extensions import BRAINS, factory
from app.models import ModelProvider
from app.models.local.brain import GrammarBrain
from app.models.local.model import LocalModel
from app.models.local.recognizer import DecoderPool, Recognizer
from app.models.local.synthesizer import Synthesizer

__all__ = ["LocalModel", "local_provider"]


def local_provider(settings: Settings, decoders: DecoderPool | None = None) -> ModelProvider:
    """The provider; `decoders` is a pool of the caller's (a test's, to watch it) instead of a new one."""
    brain = factory(BRAINS, "LOCAL_BRAIN", settings.local_brain)(settings)
    if decoders is None:
        # A brain that only knows fixed phrases gets a grammar of them; a text model needs free speech.
        grammar = brain.grammar() if isinstance(brain, GrammarBrain) else None
        decoders = DecoderPool(settings.local_asr_decoders, grammar=grammar)
    decoders.prewarm()
    synthesizer = Synthesizer(settings.voice, settings.local_speech_rate)

    def build() -> LocalModel:
        return LocalModel(
            model_id=settings.model_id or f"local-{brain.name}",
            brain=brain,
            recognizer=Recognizer(decoders),
            synthesizer=synthesizer,
            input_sample_rate=settings.input_sample_rate,
            output_sample_rate=settings.output_sample_rate,
            silence_ms=settings.end_of_speech_ms,
            max_utterance_s=settings.max_utterance_seconds,
            audio_lead_s=settings.local_audio_lead_ms / 1000,
            history_limit=settings.max_history_messages,
            queue_size=settings.audio_queue_size,
            stop_timeout=settings.stop_timeout,
        )

    return ModelProvider("local", build, close=decoders.close)
