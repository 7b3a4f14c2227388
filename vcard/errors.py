"""Errors that several layers raise and catch, kept apart so none of them imports another's module.

The security core raises `StateError` for an unreadable section of the card
state; the store raises it for the file itself; the CLI turns it into one line.
"""

from __future__ import annotations


class StateError(Exception):
    """A state directory or file that cannot be used; the message names it and the problem."""
