"""One request's prompt, rendered exactly as `/v1/messages` renders it, for what must measure it before (or
beside) the generation: `count_tokens`, context edits (their triggers and cleared counts) and cache
breakpoints (where each falls in the token prompt)."""

from __future__ import annotations

from ...chat.pipeline import RenderPlan, render_text
from ...core.messages import Conversation
from ...core.request import ChatRequest
from ...engines.runner import EngineRunner
from ...services.signatures import ThinkingSigner
from .protocol import _ConversationRequest
from .translate import to_conversation


class RequestRenderer:
    """Per request. Variants of the request (edited messages, a cache mark) render with the same plan: tools,
    tool choice, thinking and output format do not change between them. Blocking: call off the event loop."""

    def __init__(self, runner: EngineRunner, signer: ThinkingSigner | None, request: ChatRequest) -> None:
        self._engine = runner.engine
        self._signer = signer
        self.thinking = request.thinking
        self._plan = RenderPlan.of(request, self._engine.chat_template)

    def text(self, req: _ConversationRequest, conversation: Conversation | None = None) -> str:
        # `req` is the request as checked, or a variant of it (edited, or with a cache mark).
        variant = conversation or to_conversation(req, self._signer, check_pairs=False)
        return render_text(self._engine, variant, self._plan)

    def tokenize(self, text: str) -> list[int]:
        return self._engine.tokenize(text)

    def count(self, req: _ConversationRequest, conversation: Conversation | None = None) -> int:
        return len(self.tokenize(self.text(req, conversation)))
