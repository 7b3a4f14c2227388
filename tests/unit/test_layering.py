"""The host side never loads card implementation modules (docs/architecture.md).

`make lint` checks the same rule statically (import-linter); this checks what
really happens at import time, in a fresh interpreter, with the module list
taken from the lint contract so there is one list.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HOST_PACKAGES = ["minidriver", "signin"]


def forbidden_for_the_host() -> list[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    [contract] = [
        c for c in config["contracts"] if c["type"] == "forbidden" and "minidriver" in c["source_modules"]
    ]
    return list(contract["forbidden_modules"])


def loaded_after_import(module: str, *, every_submodule: bool = False) -> set[str]:
    """sys.modules of a fresh interpreter after `import <module>` (and of all its submodules)."""
    code = f"import importlib, json, pkgutil, sys, {module}\n"
    if every_submodule:
        code += (
            f"for info in pkgutil.walk_packages({module}.__path__, {module}.__name__ + '.'):\n"
            "    importlib.import_module(info.name)\n"
        )
    code += "print(json.dumps(sorted(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    )
    return set(json.loads(result.stdout))


def card_modules_in(loaded: set[str]) -> list[str]:
    forbidden = forbidden_for_the_host()
    return sorted(m for m in loaded if any(m == f or m.startswith(f + ".") for f in forbidden))


@pytest.mark.parametrize("package", HOST_PACKAGES)
def test_importing_a_host_package_loads_no_card_implementation(package: str) -> None:
    if importlib.util.find_spec(package) is None:
        pytest.skip(f"{package} is not part of this tree")
    loaded = loaded_after_import(package)
    assert package in loaded
    assert card_modules_in(loaded) == []


@pytest.mark.parametrize("package", HOST_PACKAGES)
def test_no_module_of_a_host_package_loads_card_implementation(package: str) -> None:
    if importlib.util.find_spec(package) is None:
        pytest.skip(f"{package} is not part of this tree")
    loaded = loaded_after_import(package, every_submodule=True)
    assert card_modules_in(loaded) == []


def test_the_minidriver_backends_use_the_wire_modules() -> None:
    loaded = loaded_after_import("minidriver", every_submodule=True)
    assert {"minidriver.context", "minidriver.backends.piv", "minidriver.backends.gids"} <= loaded
    assert {"vcard.wire.ins", "vcard.wire.aids", "vcard.wire.vendor", "vcard.wire.gids_tables"} <= loaded


def test_the_check_sees_card_modules_when_they_are_loaded() -> None:
    # The runtime builds cards: importing it must show up, or the test above proves nothing.
    found = card_modules_in(loaded_after_import("vcard.runtime"))
    assert {"vcard.runtime", "vcard.cardos", "vcard.security", "vcard.applets.piv"} <= set(found)


def test_the_contract_names_the_card_implementation_modules() -> None:
    forbidden = forbidden_for_the_host()
    for module in ["vcard.cardos", "vcard.applets", "vcard.security", "vcard.store", "vcard.runtime"]:
        assert module in forbidden
    for neutral in ["vcard.apdu", "vcard.tlv", "vcard.atr", "vcard.wire"]:
        assert not any(neutral == f or neutral.startswith(f + ".") for f in forbidden)
