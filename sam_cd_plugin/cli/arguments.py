"""Argument types shared by several subcommands."""
from __future__ import annotations

import argparse

DEVICES = ("auto", "cpu", "cuda")


def bands(text: str | None) -> list[int] | None:
    if not text:
        return None
    try:
        return [int(b) for b in text.replace(" ", "").split(",") if b]
    except ValueError:
        raise argparse.ArgumentTypeError(f"bands must look like 3,2,1 (got {text!r})") from None
