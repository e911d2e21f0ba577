"""Message Batches as a background service: the SQLite store (knows nothing of HTTP or engines) and the worker
that runs its pending requests through an `answer` callable the API layer hands it."""
