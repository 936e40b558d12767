"""SAM-CD's category prompts as typed by users: "not set" versus "no prior".

``parse_prompts(text)``: an empty text means *not set* (``None``: the checkpoint's prompts);
``none`` or ``-`` (:data:`NO_PRIOR_WORDS`) means *no prior* (``[]``, the all-ones prior, which
works on every SAM-CD checkpoint); anything else is a comma-separated list of prompts.
"""
from __future__ import annotations

NO_PRIOR_WORDS = ("none", "-")
NO_PRIOR = NO_PRIOR_WORDS[0]


def parse_prompts(text: str | None) -> list[str] | None:
    """``None`` (not set), ``[]`` (no prior) or the prompts of a comma-separated ``text``."""
    text = (text or "").strip()
    if not text:
        return None
    if text.lower() in NO_PRIOR_WORDS:
        return []
    return [p.strip() for p in text.split(",") if p.strip()]


def format_prompts(prompts: list[str] | None) -> str:
    """The text :func:`parse_prompts` reads back as ``prompts``."""
    if prompts is None:
        return ""
    return ",".join(prompts) if prompts else NO_PRIOR
