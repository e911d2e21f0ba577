"""The OpenAI Chat Completions API, on the same chat core."""
