"""Integration tests: the real pcscd + vpcd + client tools on this machine.

One session holds the machine-wide vpcd lock (/tmp/vcard-vpcd.lock) from the first
integration test to the end, so concurrent test runs and benchmarks queue instead
of putting two cards in one slot. pcscd is started if needed (scripts/ensure-pcscd.sh).

A missing pcscd or vpcd is a failure, not a skip: `make test` installs them, and a
silent skip would hide a broken set-up. Set VCARD_SKIP_INTEGRATION=1 to skip on
purpose (e.g. `make unit`).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence

import pytest
from harness import CardProcess, HarnessError, ensure_pcscd, environment_problem

from signin import ca as ca_module
from signin.kdc import Kdc, missing_tools
from vcard.testing import exclusive_slots

SKIP_ENV = "VCARD_SKIP_INTEGRATION"


def _skipping() -> bool:
    return os.environ.get(SKIP_ENV, "") not in ("", "0")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not _skipping():
        return
    skip = pytest.mark.skip(reason=f"{SKIP_ENV}=1: integration tests (pcscd + vpcd) skipped on request")
    for item in items:
        if "integration" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def vpcd_environment(pytestconfig: pytest.Config) -> Iterator[None]:
    """Lock the vpcd slots for this session and make sure pcscd runs with vpcd."""
    if _skipping():
        pytest.skip(f"{SKIP_ENV}=1")
    problem = environment_problem()
    if problem is not None:
        pytest.fail(f"integration tests need pcscd + vpcd: {problem} (or set {SKIP_ENV}=1)", pytrace=False)
    with contextlib.ExitStack() as stack:
        # uncaptured while waiting, so that a queued run says what it waits for
        capture = pytestconfig.pluginmanager.getplugin("capturemanager")
        with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
            stack.enter_context(exclusive_slots())
        try:
            ensure_pcscd()
        except HarnessError as error:
            pytest.fail(str(error), pytrace=False)
        yield


CardFactory = Callable[..., CardProcess]


@pytest.fixture
def start_card() -> Iterator[CardFactory]:
    """Start `vcard run` processes: start_card(profile="iso", slot=0, extra_args=()); all stopped after."""
    started: list[CardProcess] = []

    def start(profile: str = "iso", slot: int = 0, extra_args: Sequence[str] = ()) -> CardProcess:
        card = CardProcess(profile, slot, extra_args)
        started.append(card)
        return card.__enter__()

    yield start
    errors = []
    for card in reversed(started):
        try:
            card.close()
        except HarnessError as error:
            errors.append(str(error))
    if errors:
        pytest.fail("\n".join(errors), pytrace=False)


@pytest.fixture
def iso_card(start_card: CardFactory) -> CardProcess:
    """An ephemeral iso-profile card in "Virtual PCD 00 00"."""
    return start_card("iso", 0)


KDC_USER = "alice"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kdc]:
    """A private MIT KDC for this test module (realm VCARD.TEST, user KDC_USER), trusting a lab CA."""
    missing = missing_tools()
    if missing:
        pytest.fail(f"the KDC tests need {', '.join(missing)}: run `make system-deps`", pytrace=False)
    directory = tmp_path_factory.mktemp("kdc-lab")
    authority = ca_module.init_ca(directory / "ca")
    with Kdc.start(directory / "kdc", authority, eku_checking="scLogin", allow_upn=True) as kdc:
        kdc.add_principal(KDC_USER)
        yield kdc


@pytest.fixture
def kdc(lab: Kdc) -> Iterator[Kdc]:
    """The lab KDC in its Windows-like configuration (scLogin + allow_upn), no tickets."""
    if (lab.eku_checking, lab.allow_upn) != ("scLogin", True):
        lab.reconfigure("scLogin", True)
    lab.destroy_tickets()
    yield lab
