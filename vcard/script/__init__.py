"""APDU scripts: a plain-text test format, its runner, JUnit output and a session recorder.

See docs/apdu-scripts.md for the format. `parse_script` reads files into
dataclasses (reporting `file:line: problem`), `Runner` sends them through any
connection with `transmit`/`reset`, `write_junit` reports, and
`install_recorder` turns live card traffic back into a script.
"""

from .parser import Case, Script, ScriptError, parse_script, parse_string
from .runner import CaseResult, Runner, RunResult, Status, format_result

__all__ = [
    "Case",
    "CaseResult",
    "RunResult",
    "Runner",
    "Script",
    "ScriptError",
    "Status",
    "format_result",
    "parse_script",
    "parse_string",
]
