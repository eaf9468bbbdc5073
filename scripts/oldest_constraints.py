"""The lower bounds of pyproject.toml as pip constraints, for `make test-oldest`.

    python3 scripts/oldest_constraints.py > build/constraints-oldest.txt
    .venv-oldest/bin/python scripts/oldest_constraints.py --check

The first prints `name==X` for every direct dependency (`[project] dependencies`
and the `dev` extra) from its `>=X` (or `==X`) in pyproject.toml, so the pins are
never written twice and cannot drift from it.  A dependency without a lower bound
is an error: the point is that each bound is one that was tested.  `--check`,
run with the interpreter of the virtualenv built from those pins, fails unless
exactly those versions are installed there.  Standard library only (Python 3.11+).
"""

from __future__ import annotations

import re
import sys
import tomllib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"
EXTRAS = ("dev",)  # the host suite's; `bench` and `kernels` are not needed by it

# name [extras] specifiers [; marker]: what pyproject.toml here uses of PEP 508.
REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*([^;]*)")


def lower_bounds(pyproject: Path = PYPROJECT) -> dict[str, str]:
    project = tomllib.loads(pyproject.read_text())["project"]
    requirements = list(project.get("dependencies", []))
    for extra in EXTRAS:
        requirements += project.get("optional-dependencies", {}).get(extra, [])
    pins: dict[str, str] = {}
    for requirement in requirements:
        match = REQUIREMENT.match(requirement)
        if not match:
            raise SystemExit(f"{pyproject}: cannot read the requirement {requirement!r}")
        name = re.sub(r"[-_.]+", "-", match[1]).lower()
        bounds = [
            spec.strip()[2:].strip()
            for spec in match[2].split(",")
            if spec.strip().startswith((">=", "=="))
        ]
        if len(bounds) != 1:
            raise SystemExit(
                f"{pyproject}: {requirement!r} needs exactly one lower bound (>=X or ==X)"
            )
        pins[name] = bounds[0]
    return pins


def _same_release(a: str, b: str) -> bool:
    """2.5 and 2.5.0 are the same release (as pip sees them)."""

    def key(v: str):
        if not re.fullmatch(r"\d+(\.\d+)*", v):
            return v
        parts = [int(p) for p in v.split(".")]
        while len(parts) > 1 and parts[-1] == 0:
            parts.pop()
        return tuple(parts)

    return key(a) == key(b)


def check(pins: dict[str, str]) -> int:
    wrong = []
    for name, wanted in pins.items():
        try:
            installed = version(name)
        except PackageNotFoundError:
            installed = "not installed"
        if not _same_release(installed, wanted):
            wrong.append(f"{name}: {installed}, not {wanted}")
    for line in wrong:
        print(f"{sys.executable}: {line}", file=sys.stderr)
    if not wrong:
        print("lower bounds installed: " + " ".join(f"{n}=={v}" for n, v in pins.items()))
    return 1 if wrong else 0


def main(argv: list[str]) -> int:
    pins = lower_bounds()
    if argv == ["--check"]:
        return check(pins)
    if argv:
        print(__doc__, file=sys.stderr)
        return 2
    print(f"# generated from {PYPROJECT.name} by scripts/oldest_constraints.py: do not edit")
    for name, pinned in pins.items():
        print(f"{name}=={pinned}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
