"""One exception tree; each API maps it to its own wire envelope in one handler."""

from __future__ import annotations


class ParleyError(Exception):
    """Base of every error parley reports to a client."""

    status_code = 500
    error_type = "api_error"
    code: str | None = None  # OpenAI's machine-readable `error.code`, where it has one

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidRequestError(ParleyError):
    status_code = 400
    error_type = "invalid_request_error"


class PromptTooLongError(InvalidRequestError):
    """The rendered prompt does not fit the model's context (a client may drop turns and try again)."""

    code = "context_length_exceeded"  # what OpenAI clients (Codex) read to compact, as Anthropic's read the text

    def __init__(self, tokens: int, limit: int) -> None:
        super().__init__(f"prompt is too long: {tokens} tokens > {limit} maximum")
        self.tokens, self.limit = tokens, limit


class AuthenticationError(ParleyError):
    status_code = 401
    error_type = "authentication_error"


class NotFoundError(ParleyError):
    status_code = 404
    error_type = "not_found_error"


class RequestTooLargeError(ParleyError):
    status_code = 413
    error_type = "request_too_large"


class ClientGoneError(ParleyError):
    """The client closed the connection before the answer was ready; nobody reads this response."""

    status_code = 499
    error_type = "invalid_request_error"


class OverloadedError(ParleyError):
    status_code = 529
    error_type = "overloaded_error"


class EngineError(ParleyError):
    """A failure inside an inference engine, translated at the engine boundary."""

    status_code = 500
    error_type = "api_error"


class ModelCrashedError(EngineError):
    """The model's process died under a generation that had started; it is being restarted."""


class RequestTimeoutError(ParleyError):
    """The request ran past the server's wall-clock limit."""

    status_code = 504
    error_type = "timeout_error"
