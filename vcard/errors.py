"""Errors that several layers raise and catch, kept apart so none of them imports another's module.

The store raises `StateError` for a state directory or file it cannot use; the
owners of the state sections (the security core, the applets) raise
`StateFieldError` for a field they cannot read, and the runtime locates it in the
file; the CLI turns either into one line.
"""

from __future__ import annotations


class StateError(Exception):
    """A state directory or file that cannot be used; the message names it and the problem."""


class StateFieldError(StateError):
    """A field of a state section that this vcard cannot read.

    Raised by the code that owns the section (the security core, an applet), which
    knows neither the file nor where its section sits in the document: `field` is
    dotted from the section, and `located` names the file and the section.
    """

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem

    def located(self, where: str, section: str) -> StateError:
        """The error as the user sees it: `<file>: <section>.<field>: <problem>`."""
        field = f"{section}.{self.field}" if section else self.field
        return StateError(f"{where}: {field}: {self.problem}")
