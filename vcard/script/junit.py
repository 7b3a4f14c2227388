"""JUnit XML for script runs, so CI systems show each APDU case as a test.

One `<testsuite>` per script group (the SP 800-85A group for the PIV suite),
inside a `<testsuites>` root, in the shape Jenkins, GitLab and GitHub reporters
read: counts on every suite and on the root, `<failure>` with the one-line
message as attribute and the expected-vs-got block as text, `<error>` for cases
that could not run, `<skipped>` for destructive cases left out.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from .runner import RunResult, Status


def to_xml(run: RunResult, name: str = "vcard script") -> ET.Element:
    root = ET.Element("testsuites", name=name)
    suites: dict[str, ET.Element] = {}
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    times: dict[str, float] = {}
    for result in run.results:
        group = result.case.group or "(no group)"
        suite = suites.get(group)
        if suite is None:
            suite = ET.SubElement(root, "testsuite", name=group)
            suite.attrib.update(tests="0", failures="0", errors="0", skipped="0")
            suites[group] = suite
            times[group] = 0.0
        case = ET.SubElement(
            suite,
            "testcase",
            name=result.case.name,
            classname=group,
            file=result.case.location.path,
            line=str(result.case.location.line),
            time=f"{result.duration:.6f}",
        )
        times[group] += result.duration
        counter = None
        if result.status is Status.FAILED:
            element = ET.SubElement(case, "failure", message=result.message, type="mismatch")
            element.text = result.details
            counter = "failures"
        elif result.status is Status.ERROR:
            element = ET.SubElement(case, "error", message=result.message, type="error")
            element.text = result.details or result.message
            counter = "errors"
        elif result.status is Status.SKIPPED:
            ET.SubElement(case, "skipped", message=result.message)
            counter = "skipped"
        suite.set("tests", str(int(suite.get("tests", "0")) + 1))
        totals["tests"] += 1
        if counter is not None:
            suite.set(counter, str(int(suite.get(counter, "0")) + 1))
            totals[counter] += 1
    for group, suite in suites.items():
        suite.set("time", f"{times[group]:.6f}")
    root.attrib.update({key: str(value) for key, value in totals.items()})
    root.set("time", f"{sum(times.values()):.6f}")
    return root


def write_junit(run: RunResult, path: Path, name: str = "vcard script") -> None:
    tree = ET.ElementTree(to_xml(run, name))
    ET.indent(tree)
    path.parent.mkdir(parents=True, exist_ok=True)
    tree.write(path, encoding="utf-8", xml_declaration=True)
