"""The output relay: one task per session that reads the agent's events
(`agent.receive()`), encodes them (app/wire/encoder.py) and sends the frames to the
client, and tracks the turn, so a draining server ends the session once its answer is
out (app/drain.py)."""

from __future__ import annotations

from strands.bidi import BidiAgent

from app.drain import TURN_EVENTS, Turn
from app.outcome import SHUTDOWN, Ending, Outcome
from app.wire.connection import ClientConnection, ClientGone
from app.wire.encoder import OutputEncoder


async def relay(
    agent: BidiAgent, encoder: OutputEncoder, client: ClientConnection, turn: Turn, ending: Ending
) -> None:
    encode, send = encoder.encode, client.send
    events = agent.receive()
    try:
        while True:
            try:
                event = await anext(events)
            except StopAsyncIteration:
                break
            except Exception as exc:  # the model (or a tool) failed; our own bugs propagate
                ending.model_failed(exc)
                return
            kind = event.get("type", "")
            if in_turn := kind in TURN_EVENTS:
                turn.opening(kind, event)
            for frame in encode(event):
                await send(frame)
            if in_turn and turn.closed(kind, event) and ending.draining:
                ending.finish(SHUTDOWN)  # the answer is out: nothing keeps the session now
            if kind == "bidi_connection_stop":
                break
    except ClientGone as gone:
        ending.client_gone(gone)
        return
    # receive() ends only after a connection stop: the model ended the conversation.
    ending.finish(Outcome("model_stop"))
