"""Session and external PINs through the real stack: session PINs across pyscard connections, external PINs
answered with `vcard pinpad`, and `vcard info` on a running card.

Commands used (docs/vendor-commands.md): 80 5C ISSUE SESSION PIN (P1=01: then drop the
status), 80 5D VERIFY SESSION PIN, 80 5E VERIFY EXTERNAL, 80 5B GET PIN_SET; the iso
applet's VERIFY 00 20 00 8r (status query without data).
"""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest
from harness import CardProcess, operator_pin_profile, pcsc_connection, transmit

pytestmark = pytest.mark.integration

READER = "Virtual PCD 00 00"
SELECT_ISO = "00A4040005F076636172"
VERIFY_USER = "0020008106313233343536"
STATUS_USER = "00200081"


def _disposition(name: str) -> int:
    """pyscard's default disconnect disposition powers the card down, which ends session PINs."""
    from smartcard import scard

    value: int = getattr(scard, name)
    return value


def test_session_pin_works_on_a_second_connection_and_dies_with_a_reset(iso_card: CardProcess) -> None:
    first = pcsc_connection(READER, disposition=_disposition("SCARD_LEAVE_CARD"))
    transmit(first, SELECT_ISO)
    assert transmit(first, VERIFY_USER)[1] == 0x9000
    token, sw = transmit(first, "805C010100")  # issue for role 1, then drop the status
    assert sw == 0x9000 and len(token) == 16
    assert transmit(first, STATUS_USER)[1] == 0x63C3
    first.close()

    second = pcsc_connection(READER, disposition=_disposition("SCARD_RESET_CARD"))
    transmit(second, SELECT_ISO)
    wrong = bytes(b ^ 0xFF for b in token)
    assert transmit(second, "805D0001" + f"{len(wrong):02X}" + wrong.hex())[1] == 0x6982
    assert transmit(second, STATUS_USER)[1] == 0x63C3, "a wrong session PIN must not cost a PIN try"
    assert transmit(second, "805D0001" + f"{len(token):02X}" + token.hex())[1] == 0x9000
    assert transmit(second, STATUS_USER)[1] == 0x9000
    pin_set, sw = transmit(second, "805B000001")
    assert sw == 0x9000 and pin_set[0] & 0x02
    second.close()  # SCARD_RESET_CARD: a card reset ends the session PIN

    third = pcsc_connection(READER)
    transmit(third, SELECT_ISO)
    assert transmit(third, STATUS_USER)[1] == 0x63C3
    assert transmit(third, "805D0001" + f"{len(token):02X}" + token.hex())[1] == 0x6982
    third.close()


def _pinpad(state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vcard", "pinpad", "--state", str(state), "--wait", "5", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def _verify_external_while(state: Path, *pinpad_args: str) -> tuple[tuple[bytes, int], str]:
    """Send VERIFY EXTERNAL for role 4 and answer it with `vcard pinpad` from another process."""
    connection = pcsc_connection(READER, disposition=_disposition("SCARD_LEAVE_CARD"))
    transmit(connection, SELECT_ISO)
    result: list[tuple[bytes, int]] = []
    waiter = threading.Thread(target=lambda: result.append(transmit(connection, "805E000400")))
    waiter.start()
    operator = _pinpad(state, *pinpad_args) if pinpad_args else None
    waiter.join(30)
    assert not waiter.is_alive(), "VERIFY EXTERNAL never answered"
    connection.close()
    output = "" if operator is None else operator.stdout + operator.stderr
    return result[0], output


@pytest.fixture
def external_card(tmp_path: Path) -> tuple[Path, CardProcess]:
    profile = tmp_path / "external.toml"
    profile.write_text(operator_pin_profile(3))
    state = tmp_path / "state"
    card = CardProcess(str(profile), 0, ["--state", str(state)])
    card.__enter__()
    yield state, card  # type: ignore[misc]
    card.close()


def test_external_pin_approve_deny_and_timeout_through_vcard_pinpad(
    external_card: tuple[Path, CardProcess],
) -> None:
    state, _card = external_card
    assert (state / "control.sock").stat().st_mode & 0o777 == 0o600

    (token, sw), output = _verify_external_while(state, "approve")
    assert sw == 0x9000 and len(token) == 16, output

    (data, sw), output = _verify_external_while(state, "deny")
    assert sw == 0x63C2 and data == b"", output

    (data, sw), output = _verify_external_while(state, "enter", "2468")
    assert sw == 0x9000 and len(data) == 16, output

    (data, sw), _ = _verify_external_while(state)  # nobody answers: the 3 s timeout fails it
    assert sw == 0x6982 and data == b""

    info = subprocess.run(
        [sys.executable, "-m", "vcard", "info", "--state", str(state), "--json"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert '"pin pad"' in info.stdout and '"external"' in info.stdout
