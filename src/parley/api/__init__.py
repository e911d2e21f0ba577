"""HTTP layer: thin translation between wire formats and the chat core."""
