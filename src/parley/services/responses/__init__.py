"""Stored Responses (the OpenAI Responses API's `store: true`), kept across restarts."""
