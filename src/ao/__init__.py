"""ao: run a fleet of AI coding agents on a real codebase."""

__version__ = "0.1.0"
