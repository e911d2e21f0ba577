"""Provider-neutral chat core: conversation, prompt rendering, generation, output events."""
