"""What the tests share beyond conftest.py's fixtures: model builders (reasoning, MLX, HF directory), a fake
model hub, an SSE reader, and the scripted engine (a test double for split points and faults)."""
