"""The client-side commands of the `parley` CLI (`launch`, `pull`, `chat`): each module has
`add_arguments(parser)` and `run(args) -> int`, and talks to a server over HTTP like any other client."""
