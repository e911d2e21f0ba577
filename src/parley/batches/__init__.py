"""Message batches at rest: an embedded SQLite store that knows nothing of HTTP or engines."""
