"""The README's examples work as written: the profile snippet loads, the minidriver example runs."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

import minidriver as md
from vcard.host import InProcessConnection
from vcard.profile import load_profile
from vcard.runtime import VirtualCard
from vcard.testing.provisioning import PivProvisioner

README = Path(__file__).resolve().parents[2] / "README.md"


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README.read_text(), flags=re.S)


def section_block(heading: str, language: str) -> str:
    text = README.read_text()
    start = text.index(heading)
    match = re.search(rf"```{language}\n(.*?)```", text[start:], flags=re.S)
    assert match is not None
    return match.group(1)


def test_the_profile_snippet_loads_and_makes_a_working_card(tmp_path: Path) -> None:
    (snippet,) = blocks("toml")
    path = tmp_path / "my-card.toml"
    path.write_text(snippet)
    profile = load_profile(path)
    card = VirtualCard.open(profile, None, ephemeral=True)
    try:
        card.card.power_on()
        assert card.card.transmit(bytes.fromhex("0020008106313233343536")) == b"\x90\x00"
    finally:
        card.close()


@pytest.fixture
def piv_with_key(monkeypatch: pytest.MonkeyPatch) -> Iterator[rsa.RSAPublicKey]:
    virtual = VirtualCard.open(load_profile("piv"), None, ephemeral=True)
    keys = PivProvisioner(InProcessConnection(virtual.card)).provision({0x9A: "rsa2048"})
    real = md.CardData.inprocess

    def connect(reader: str, *args: Any, **kwargs: Any) -> md.CardData:
        assert reader == "Virtual PCD 00 00"
        return real(virtual.card)

    monkeypatch.setattr(md.CardData, "connect", connect)
    public = keys[0x9A]
    assert isinstance(public, rsa.RSAPublicKey)
    yield public
    virtual.close()


def test_the_minidriver_example_runs_and_its_signature_verifies(piv_with_key: rsa.RSAPublicKey) -> None:
    code = section_block("## The minidriver API", "python")
    namespace: dict[str, Any] = {}
    exec(compile(code, "README.md", "exec"), namespace)
    # as the README says: little-endian from CardSignData, big-endian for cryptography
    piv_with_key.verify(namespace["signature_be"], b"message", padding.PKCS1v15(), hashes.SHA256())
    assert namespace["signature"] == namespace["signature_be"][::-1]
