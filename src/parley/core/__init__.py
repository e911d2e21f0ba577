"""The core types every layer shares: conversation, sampling parameters, thinking, tool choice, output events,
and the chat template that renders a conversation. A leaf: it imports nothing of parley but `errors`."""
