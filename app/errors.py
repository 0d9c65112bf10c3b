"""The service's exceptions. Each one that reaches a client knows its wire code and close code.

VoiceAgentError
├── ConfigError        bad setting; stops startup
├── PluginError        a tool plugin failed to load; stops startup
└── SessionError       ends up as an `error` event on the wire
    ├── ProtocolError  a bad client frame (fatal only for oversized or unusable input)
    └── ModelError     the model failed; fatal, close 1011
"""

from __future__ import annotations

from starlette import status

from app.wire.outbound import Error, ErrorCode


class VoiceAgentError(Exception):
    pass


class ConfigError(VoiceAgentError):
    pass


class PluginError(VoiceAgentError):
    pass


class SessionError(VoiceAgentError):
    code: ErrorCode = "internal_error"
    fatal = True
    close_code = status.WS_1011_INTERNAL_ERROR

    def __init__(self, message: str, *, code: ErrorCode | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def to_wire(self) -> Error:
        return Error(type="error", code=self.code, message=self.message, fatal=self.fatal)


class ProtocolError(SessionError):
    """A client frame the server cannot use; the session goes on unless `fatal`."""

    fatal = False
    close_code = status.WS_1003_UNSUPPORTED_DATA

    def __init__(
        self, code: ErrorCode, message: str, *, fatal: bool = False, close_code: int | None = None
    ) -> None:
        super().__init__(message, code=code)
        self.fatal = fatal
        if close_code is not None:
            self.close_code = close_code


class ModelError(SessionError):
    code: ErrorCode = "model_error"
    fatal = True
    close_code = status.WS_1011_INTERNAL_ERROR
