"""Package list for setuptools; everything else is in pyproject.toml.

Only here because pyproject.toml cannot combine package discovery with the one
mapped package: the top-level profiles/ directory is installed as `vcard.profiles`.
"""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["vcard", "vcard.*", "minidriver", "minidriver.*"]), "vcard.profiles"],
    package_dir={"vcard.profiles": "profiles"},
)
