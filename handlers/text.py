"""Text shaping shared by every channel and the core: one line clipped to a limit, a long
message split into parts. Pure functions; the limits themselves are the platforms' rules
(handlers/limits.py)."""

from __future__ import annotations


def clip(text: str, limit: int) -> str:
    """One line of at most `limit` characters, cut with an ellipsis when it had to be,
    on a whole word when one ends near the limit."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    if text[limit - 1] != " " and cut.rfind(" ") > limit // 2:
        cut = cut[: cut.rfind(" ")]
    return cut.rstrip(" ,.;:-") + "…"


def split_text(text: str, limit: int) -> list[str]:
    """Parts of at most `limit` characters, split at paragraph or line breaks where
    possible, never mid-word unless a word is longer than half the limit."""
    chunks: list[str] = []
    rest = text
    while len(rest) > limit:
        cut = max(rest.rfind("\n\n", 0, limit), rest.rfind("\n", 0, limit))
        if cut < limit // 2:
            cut = rest.rfind(" ", 0, limit)
        if cut < limit // 2:
            cut = limit
        chunks.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip()
    chunks.append(rest)
    return [c for c in chunks if c] or [""]
