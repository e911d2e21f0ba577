"""Grammar pieces that need neither vLLM nor torch: importable in the API process and the main venv."""

from __future__ import annotations

EXTRA_KEY = "parley_lazy_grammar"  # a request's extra_args entry: {"gbnf": str, "triggers": [regex, ...]}
PROCESSOR = "parley.engines.vllm.lazy_grammar:LazyGrammarProcessor"  # as AsyncEngineArgs(logits_processors=) names it
