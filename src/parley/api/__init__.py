"""The HTTP wire layers: anthropic/ (Messages, count_tokens, Message Batches routes), openai/ (Chat
Completions), responses/ (the Responses API) and playground/, over what they share: sse.py, errors.py,
auth.py, middleware.py, models.py (`/v1/models`). Each translates its wire format to the neutral request
and back; what lives between requests (registry, stores, the batch worker) is in parley.services."""
