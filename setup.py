"""Package list for setuptools; everything else is in pyproject.toml.

Only here because pyproject.toml cannot combine package discovery with the one
mapped package: the top-level profiles/ directory is installed as `vcard.profiles`.
"""

from setuptools import find_packages, setup

PACKAGES = ["vcard", "vcard.*", "minidriver", "minidriver.*", "signin", "signin.*"]

setup(
    packages=[*find_packages(include=PACKAGES), "vcard.profiles"],
    package_dir={"vcard.profiles": "profiles"},
)
