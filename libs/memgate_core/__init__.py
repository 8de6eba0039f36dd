"""Shared building blocks of memgate: configuration, wire events, errors, ids, tokens."""
