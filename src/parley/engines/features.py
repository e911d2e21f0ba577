"""What an engine can do beyond plain generation, declared by the engine and checked here, in one place,
before a request reaches it."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

from ..core.params import SamplingParams
from ..errors import InvalidRequestError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EngineFeatures:
    forced_reasoning_close: bool = False  # writes the end of reasoning itself once a thinking budget is spent
    lazy_grammar: bool = False  # a grammar that engages when the output matches a trigger (tool calls in `auto`)
    logprobs: bool = False  # log-probabilities of the sampled and the most likely tokens
    batching: bool = False  # several generations in one decode step


def fit_to_engine(features: EngineFeatures, params: SamplingParams, engine: str) -> SamplingParams:
    """The request as this engine can run it. A request that needs what the engine lacks is a 400; a lazy
    grammar is only a safeguard (the calls are parsed either way), so without one the calls are unconstrained."""
    budget = params.reasoning_budget
    if budget is not None and budget.max_tokens < params.max_tokens and not features.forced_reasoning_close:
        raise InvalidRequestError(f"thinking.budget_tokens is not supported by the {engine} engine: it cannot "
                                  "end the model's reasoning early; omit budget_tokens or raise it to max_tokens")
    if params.logprobs is not None and not features.logprobs:
        raise InvalidRequestError(f"logprobs are not supported by the {engine} engine")
    if params.grammar is not None and params.grammar.lazy and not features.lazy_grammar:
        log.info("the %s engine has no lazy grammars: tool calls in `auto` are parsed, not constrained", engine)
        params = dataclasses.replace(params, grammar=None)
    return params
