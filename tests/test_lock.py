"""The locks that `make lock` writes: every package at one version, pyproject.toml covered (a
dependency added there without `make lock` fails here), the image's lock make's versions of
what the package alone needs, torch the CPU build of pyproject's pin."""

from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO_ROOT = Path(__file__).resolve().parents[1]
LOCK = REPO_ROOT / "requirements.lock"  # the image installs it
LOCK_ALL = REPO_ROOT / "requirements-all.lock"  # make installs it
PROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]


def pins(lock: Path) -> dict[str, Version]:
    """Package name -> version of every line of `lock`, each of which must be `name==version`."""
    pinned = {}
    for line in lock.read_text().splitlines():
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        requirement = Requirement(text)
        (specifier,) = requirement.specifier
        assert specifier.operator == "==" and requirement.marker is None, line
        pinned[canonicalize_name(requirement.name)] = Version(specifier.version)
    return pinned


def test_each_lock_covers_what_pyproject_asks() -> None:
    extras = [text for group in PROJECT["optional-dependencies"].values() for text in group]
    for lock, asked in (
        (LOCK, PROJECT["dependencies"]),
        (LOCK_ALL, PROJECT["dependencies"] + extras),
    ):
        locked = pins(lock)
        for requirement in map(Requirement, asked):
            name = canonicalize_name(requirement.name)
            assert name in locked, f"{name} is not in {lock.name}: run `make lock`"
            assert requirement.specifier.contains(locked[name], prereleases=True), (
                f"{lock.name} has {name} {locked[name]}, pyproject asks {requirement}:"
                " run `make lock`"
            )


def test_the_images_lock_has_makes_versions() -> None:
    image, make = pins(LOCK), pins(LOCK_ALL)
    assert {name: make.get(name) for name in image} == image
    assert set(make) - set(image)  # the extras' packages (pytest, pyspark...) stay out


def test_torch_is_the_cpu_build_of_pyprojects_pin() -> None:
    asked = map(Requirement, PROJECT["dependencies"])
    (pin,) = [requirement for requirement in asked if requirement.name == "torch"]
    (version,) = pin.specifier
    for lock in (LOCK, LOCK_ALL):
        locked = pins(lock)
        assert locked["torch"] == Version(f"{version.version}+cpu"), lock.name
        cuda = [name for name in locked if name.startswith("nvidia-") or name == "triton"]
        assert cuda == [], lock.name


def test_the_images_lock_leaves_the_world_out() -> None:
    """`pip install .` pulls neither the world's sampled instruments (pyaudio needs a compiler
    and PortAudio's headers) nor torchaudio: the image ships without a compiler."""
    image = pins(LOCK)
    for name in ("tinysoundfont", "pyaudio", "pedalboard", "torchaudio"):
        assert name not in image, name
    assert {"tinysoundfont", "pedalboard"} <= set(pins(LOCK_ALL))
