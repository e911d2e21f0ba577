"""Constrained decoding: JSON Schemas → GBNF grammars for llama.cpp."""
