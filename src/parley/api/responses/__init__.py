"""The OpenAI Responses API (what Codex CLI speaks), on the same chat core."""
