"""Grammar pieces that need neither vLLM nor torch: importable in the API process and the main venv."""

from __future__ import annotations

EXTRA_KEY = "parley_lazy_grammar"  # a request's extra_args entry: {"gbnf": str, "triggers": [regex, ...]}
PROCESSOR = "parley.engines.vllm.lazy_grammar:LazyGrammarProcessor"  # as AsyncEngineArgs(logits_processors=) names it


def compile_gbnf(gbnf: str) -> str:
    """llguidance's form of a GBNF grammar; ValueError when it cannot be compiled."""
    from llguidance import LLMatcher, grammar_from

    grammar = grammar_from("gbnf", gbnf)
    if problem := LLMatcher.validate_grammar(grammar):
        raise ValueError(problem)
    return grammar
