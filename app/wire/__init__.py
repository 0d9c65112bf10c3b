"""Wire protocol v1 (docs/protocol.md is the contract), one module per concern.

- `inbound`: client frames parsed once at the edge into typed messages.
- `outbound`: every message the server sends, as a TypedDict, and how it is serialised.
- `encoder`: strands agent events to outbound frames (the per-frame hot path).
- `connection`: the session's socket: send, receive, close, transport failures mapped.
"""
