"""reader.conf.d: which vpcd ports pcscd serves, and the stanzas `vcard readers --slots N` writes."""

from __future__ import annotations

from pathlib import Path

import pytest

from vcard.transport import readers
from vcard.transport.readers import ReaderConfError, apply, parse_stanzas, port_problem, served_ports

DEBIAN_VPCD = """FRIENDLYNAME "Virtual PCD"
DEVICENAME   /dev/null:0x8C7B
LIBPATH      /usr/lib/pcsc/drivers/serial/libifdvpcd.so
CHANNELID    0x8C7B
"""
OTHER_DRIVER = """#DEVICENAME        /dev/ttySn[:reader]
FRIENDLYNAME "GemPCTwin serial"
DEVICENAME /dev/ttyS0
LIBPATH /usr/lib/pcsc/drivers/serial/libccidtwin.so
"""


@pytest.fixture
def machine(tmp_path: Path) -> tuple[Path, Path, Path]:
    conf = tmp_path / "reader.conf.d"
    conf.mkdir()
    (conf / "vpcd").write_text(DEBIAN_VPCD)
    (conf / "libccidtwin").write_text(OTHER_DRIVER)
    library = tmp_path / "libifdvpcd.so"
    library.write_bytes(b"\x7fELF driver bytes")
    return conf, library, tmp_path / "lib"


def test_the_packaged_stanza_serves_two_slots(machine: tuple[Path, Path, Path]) -> None:
    conf, _, _ = machine
    assert served_ports(conf) == {35963: "Virtual PCD 00 00", 35964: "Virtual PCD 00 01"}
    assert port_problem("127.0.0.1", 35964, conf) is None
    problem = port_problem("127.0.0.1", 35965, conf)
    assert problem is not None and "35965 has no vpcd slot" in problem and "35963" in problem
    assert port_problem("192.0.2.1", 35965, conf) is None  # another machine: not ours to judge


def test_a_stanza_without_devicename_port_uses_channelid() -> None:
    (stanza,) = parse_stanzas(
        'FRIENDLYNAME "X"\nDEVICENAME /dev/null\nLIBPATH /l/libifdvpcd.so\nCHANNELID 40000\n', "f"
    )
    assert list(stanza.ports) == [40000, 40001]


def test_slots_16_writes_seven_stanzas_each_with_its_own_library(machine: tuple[Path, Path, Path]) -> None:
    conf, library, library_dir = machine
    stanzas = apply(16, conf, library, library_dir)
    generated = sorted(conf.glob("vcard-vpcd-*"))
    assert len(generated) == 7
    libraries = [s.library for s in stanzas]
    assert len(set(libraries)) == len(libraries)  # no two stanzas share a slot table
    for path in libraries[1:]:
        assert Path(path).read_bytes() == library.read_bytes()
    ports = served_ports(conf)
    assert sorted(ports) == list(range(35963, 35963 + 16))
    assert len(set(ports.values())) == 16
    assert (conf / "vpcd").read_text() == DEBIAN_VPCD  # the packaged file is never touched
    assert (conf / "libccidtwin").read_text() == OTHER_DRIVER


def test_fewer_slots_removes_only_what_vcard_wrote(machine: tuple[Path, Path, Path]) -> None:
    conf, library, library_dir = machine
    apply(8, conf, library, library_dir)
    assert len(list(conf.glob("vcard-vpcd-*"))) == 3
    apply(2, conf, library, library_dir)
    assert sorted(p.name for p in conf.iterdir()) == ["libccidtwin", "vpcd"]
    assert list(library_dir.glob("*.so")) == []
    assert sorted(served_ports(conf)) == [35963, 35964]


def test_odd_slot_counts_round_up_to_whole_stanzas(machine: tuple[Path, Path, Path]) -> None:
    conf, library, library_dir = machine
    apply(5, conf, library, library_dir)
    assert len(served_ports(conf)) == 6


@pytest.mark.parametrize("slots", [0, 17, 32])
def test_more_than_pcscd_serves_is_refused(machine: tuple[Path, Path, Path], slots: int) -> None:
    conf, library, library_dir = machine
    with pytest.raises(ReaderConfError, match="16 readers"):
        apply(slots, conf, library, library_dir)
    assert sorted(p.name for p in conf.iterdir()) == ["libccidtwin", "vpcd"]


def test_a_seventeenth_reader_is_not_served(tmp_path: Path) -> None:
    conf = tmp_path / "conf"
    conf.mkdir()
    for k in range(9):  # 18 slots written by hand: pcscd keeps 16
        (conf / f"v{k}").write_text(
            f'FRIENDLYNAME "V{k}"\nDEVICENAME /dev/null:{40000 + 2 * k}\nLIBPATH /x/libifdvpcd-{k}.so\n'
        )
    ports = served_ports(conf)
    assert len(ports) == readers.PCSCD_MAX_READERS
    problem = port_problem("127.0.0.1", 40016, conf)
    assert problem is not None and "no vpcd slot" in problem


def test_without_a_vpcd_stanza_nothing_is_written(tmp_path: Path) -> None:
    conf = tmp_path / "conf"
    conf.mkdir()
    with pytest.raises(ReaderConfError, match="no vpcd stanza"):
        apply(4, conf, tmp_path / "lib.so", tmp_path / "lib")
    assert list(conf.iterdir()) == []


def test_the_readers_command_writes_and_lists(
    machine: tuple[Path, Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from vcard.cli import main

    conf, library, library_dir = machine
    monkeypatch.setattr(readers, "DEBIAN_LIBRARY", library)
    args = ["readers", "--conf-dir", str(conf), "--library-dir", str(library_dir)]
    result = CliRunner().invoke(main, [*args, "--slots", "4", "--no-restart"])
    assert result.exit_code == 0, result.output
    assert "Virtual PCD vcard 1 00 01" in result.output and "127.0.0.1:35966" in result.output
    assert sorted(p.name for p in library_dir.iterdir()) == ["libifdvpcd-1.so"]
    listed = CliRunner().invoke(main, ["readers", "--conf-dir", str(conf)])
    assert listed.output.count("Virtual PCD") == 4
    refused = CliRunner().invoke(main, [*args, "--slots", "17", "--no-restart"])
    assert refused.exit_code == 2 and "17" in refused.output
