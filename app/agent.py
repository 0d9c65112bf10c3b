"""The `BidiAgent` a session runs: its model, tools, prompt, and the hooks that bound it.

Two strands hooks keep a long conversation within limits: history is trimmed to
MAX_HISTORY_MESSAGES on every message added (strands keeps it without bound), and model
connection restarts are spent from a `RestartBudget`. A third counts the restarts made.
"""

from __future__ import annotations

from collections.abc import Sequence

from strands.bidi import BidiAgent
from strands.bidi.hooks import BidiAfterConnectionRestartEvent, BidiBeforeConnectionRestartEvent
from strands.bidi.models import AudioCapable, BidiModel
from strands.hooks import MessageAddedEvent
from strands.types.tools import AgentTool

from app.config import Settings
from app.history import trim_history
from app.metrics import Metrics
from app.restarts import RestartBudget


def build_agent(
    model: BidiModel, tools: Sequence[AgentTool], settings: Settings, metrics: Metrics
) -> BidiAgent:
    agent = BidiAgent(model=model, tools=list(tools), system_prompt=settings.system_prompt)
    limit = settings.max_history_messages

    def bound_history(event: MessageAddedEvent) -> None:
        trim_history(agent.messages, limit)

    agent.add_hook(bound_history, MessageAddedEvent)
    budget = RestartBudget(settings.model_max_restarts, settings.model_restart_window)
    agent.add_hook(budget.spend, BidiBeforeConnectionRestartEvent)
    agent.add_hook(metrics.model_restarted, BidiAfterConnectionRestartEvent)
    return agent


def model_rates(model: BidiModel, settings: Settings) -> tuple[int, int]:
    """The model's own input and output rates: what a client gets unless it asks otherwise."""
    if isinstance(model, AudioCapable):
        config = model.get_audio_config()
        return config["input"]["sample_rate"], config["output"]["sample_rate"]
    return settings.input_sample_rate, settings.output_sample_rate
