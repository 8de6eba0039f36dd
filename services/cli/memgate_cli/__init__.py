"""The `memgate` command: the composition root that wires libs and services together."""
