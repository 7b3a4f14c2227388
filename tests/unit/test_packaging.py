"""A wheel built from this tree carries the shipped profiles and conformance scripts.

profiles/ sits at the top of the repository and is installed as the package
`vcard.profiles` (setup.py maps it); this builds a real wheel from a copy of the
tree, installs it without dependencies into a directory of its own and runs the
installed `vcard profiles` from an unrelated working directory, so nothing can
come from the checkout. Slow-ish (one wheel build, no network: the build
back-end comes from pip's configured index), bounded by timeouts.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
IGNORED = shutil.ignore_patterns(
    ".git", ".venv", "*.egg-info", "build", "dist", "__pycache__", ".*_cache", "tests"
)


def test_an_installed_wheel_lists_every_shipped_profile(tmp_path: Path) -> None:
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=IGNORED)
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(source)],
        check=True,
        timeout=300,
        capture_output=True,
    )
    [wheel] = wheels.glob("vcard-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    shipped = sorted(path.name for path in (ROOT / "profiles").glob("*.toml"))
    assert shipped, "no profiles in profiles/"
    assert (
        sorted(
            n.removeprefix("vcard/profiles/")
            for n in names
            if n.startswith("vcard/profiles/") and n.endswith(".toml")
        )
        == shipped
    )
    conformance = sorted(path.name for path in (ROOT / "vcard" / "conformance").glob("*.apdu"))
    assert conformance and all(f"vcard/conformance/{name}" in names for name in conformance)

    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-index",
            "-q",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
        timeout=120,
        capture_output=True,
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(target)}
    listing = subprocess.run(
        [str(target / "bin" / "vcard"), "profiles"],
        cwd=elsewhere,
        env=env,
        check=True,
        timeout=60,
        capture_output=True,
        text=True,
    ).stdout
    listed = sorted(line.split()[0] for line in listing.splitlines() if line.strip())
    assert listed == sorted(Path(name).stem for name in shipped)

    where = subprocess.run(
        [sys.executable, "-c", "import vcard.profile as p; print(p.PROFILE_DIR)"],
        cwd=elsewhere,
        env=env,
        check=True,
        timeout=60,
        capture_output=True,
        text=True,
    ).stdout.strip()
    assert Path(where) == target / "vcard" / "profiles"
