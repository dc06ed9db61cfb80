"""Shared test helpers: generated data, AWS fakes and fixtures, benchmark runner, paths."""
