"""Venue failures. `transient` says whether the same order may be tried again."""

from __future__ import annotations


class VenueError(Exception):
    def __init__(self, message: str, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient
