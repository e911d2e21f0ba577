"""parley: local LLMs behind a faithful Anthropic Messages API."""

__version__ = "0.1.0"
