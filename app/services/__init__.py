"""Keyword-only service functions that take a session: the only code that writes the tables."""
