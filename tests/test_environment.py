"""The three descriptions of the environment agree with each other and with what is installed.

``requirements.in`` holds the top-level pins, ``requirements.txt`` the full lock made from it
(``make lock``), and ``environment.yml`` the same top-level pins for conda users and Binder.
"""

import re
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest
import yaml
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

ROOT = Path(__file__).resolve().parents[1]

# Conda packages that have no counterpart in requirements.in.
CONDA_ONLY = {"python", "pip"}

PIP_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*([^\s;#]+)")
CONDA_SPEC = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:(==?)\s*([^\s=]+))?\s*$")


def pip_pins(path: Path) -> dict[str, str]:
    """Return ``{normalised name: version}`` for every ``name==version`` line of *path*."""
    pins = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        match = PIP_PIN.match(line)
        assert match, f"{path.name}: cannot parse {line!r}; expected name==version"
        pins[canonicalize_name(match[1])] = match[2]
    return pins


def load_environment_yml() -> dict:
    with (ROOT / "environment.yml").open(encoding="utf-8") as f:
        return yaml.safe_load(f)


def conda_pins() -> dict[str, str | None]:
    """Return ``{normalised name: version or None}`` for the conda dependencies."""
    pins = {}
    for dep in load_environment_yml()["dependencies"]:
        if isinstance(dep, dict):  # the `pip:` section
            continue
        match = CONDA_SPEC.match(str(dep))
        assert match, f"environment.yml: cannot parse {dep!r}; expected name=version"
        pins[canonicalize_name(match[1])] = match[3]
    return pins


def same_version(a: str, b: str) -> bool:
    """Compare as versions (``1.0 == 1.0.0``), or as text when one is not a plain version."""
    try:
        return Version(a) == Version(b)
    except InvalidVersion:
        return a == b


def installed_version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def report(problems: list[str], what: str) -> str:
    return f"{what}:\n  " + "\n  ".join(problems)


@pytest.fixture(scope="module")
def top_level() -> dict[str, str]:
    pins = pip_pins(ROOT / "requirements.in")
    assert pins, "requirements.in pins no package"
    return pins


def test_environment_yml_pins_the_same_versions_as_requirements_in(top_level):
    """environment.yml and requirements.in pin the same packages at the same versions."""
    conda = {name: v for name, v in conda_pins().items() if name not in CONDA_ONLY}
    problems = []
    for name in sorted(top_level.keys() | conda.keys()):
        pip_v, conda_v = top_level.get(name), conda.get(name)
        if pip_v is None:
            problems.append(f"{name}: environment.yml {conda_v}, missing from requirements.in")
        elif name not in conda:
            problems.append(f"{name}: requirements.in {pip_v}, missing from environment.yml")
        elif conda_v is None or not same_version(conda_v, pip_v):
            problems.append(f"{name}: requirements.in {pip_v}, environment.yml {conda_v}")
    assert not problems, report(problems, "environment.yml has drifted from requirements.in")


def test_requirements_txt_keeps_every_top_level_pin(top_level):
    """Every pin of requirements.in appears with the same version in requirements.txt."""
    lock = pip_pins(ROOT / "requirements.txt")
    problems = [
        f"{name}: requirements.in {pin}, requirements.txt {lock.get(name, 'missing')}"
        for name, pin in sorted(top_level.items())
        if name not in lock or not same_version(lock[name], pin)
    ]
    assert not problems, report(problems, "requirements.txt is stale; run `make lock`")


def test_installed_versions_match_the_pins(top_level):
    """The installed version of each top-level package is the one pinned in requirements.in."""
    problems = []
    for name, pin in sorted(top_level.items()):
        got = installed_version(name)
        if got is None or not same_version(got, pin):
            problems.append(f"{name}: requirements.in {pin}, installed {got or 'nothing'}")
    hint = "reinstall with `rm .venv/.installed; make test`"
    assert not problems, report(problems, f"installed packages differ from the pins; {hint}")


def test_environment_yml_uses_only_conda_forge():
    """environment.yml takes packages from conda-forge and no other channel."""
    channels = load_environment_yml().get("channels")
    assert channels == ["conda-forge"], (
        f"environment.yml channels are {channels}; expected ['conda-forge'] only"
    )
