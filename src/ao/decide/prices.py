"""The one price table: USD per million tokens, (input, output, cache write, cache read), for
the planner's own calls and the agents' (agent_usage.py). A model not in it is priced as the
default, and what is priced so says it is an estimate."""

from __future__ import annotations

DEFAULT_MODEL = "claude-sonnet-5-5"
PRICES = {
    "claude-sonnet-5-5": (3.0, 15.0, 3.75, 0.30),
    "claude-opus-5-5": (15.0, 75.0, 18.75, 1.50),
    "claude-haiku-5-5": (1.0, 5.0, 1.25, 0.10),
    # OpenAI's, for Codex (cached input is read at a tenth of the price; no cache writes)
    "gpt-5": (1.25, 10.0, 0.0, 0.125),
    "gpt-5-codex": (1.25, 10.0, 0.0, 0.125),
    # Google's, for Gemini CLI (prompts up to 200k tokens)
    "gemini-2.5-pro": (1.25, 10.0, 0.0, 0.31),
    "gemini-2.5-flash": (0.30, 2.50, 0.0, 0.075),
}


def cost(model: str, usage: dict[str, int]) -> float:
    p = PRICES.get(model, PRICES[DEFAULT_MODEL])
    return (usage.get("input_tokens", 0) * p[0] + usage.get("output_tokens", 0) * p[1]
            + usage.get("cache_creation_input_tokens", 0) * p[2]
            + usage.get("cache_read_input_tokens", 0) * p[3]) / 1e6
