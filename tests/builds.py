"""The tests' own C programs, libraries (lib*.c) and BPF objects, compiled once and
kept in build/tests/.

Each is named by a hash of what it is made from (the compiler's arguments, its
source, and for a BPF object the headers and the object's source it includes), so a
changed source is compiled again and an unchanged one never is.  The kernel matrix's
guests see the repository read-only and compile some 20 times slower: scripts/kernels
runs this file on the host first (`python tests/builds.py`), and the guests find
every program already built.  Where build/tests/ cannot be written, a program is
compiled into the test's temporary directory instead."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "build" / "tests"
PROGRAMS = ROOT / "tests" / "programs"
# What the tests build: C programs, and BPF objects (*.bpf.c).
SOURCES = [
    ROOT / "scripts" / "bench" / "storm.c",
    ROOT / "scripts" / "bench" / "forkloop.c",
    *sorted(p for p in PROGRAMS.glob("*.c") if not p.name.endswith(".bpf.c")),
    *sorted(PROGRAMS.glob("*.bpf.c")),
]
# What a BPF object of the tests is made from besides its own source.
BPF_INPUTS = [
    ROOT / "bpf" / "process_monitor.bpf.c",
    ROOT / "bpf" / "process_monitor.h",
    ROOT / "build" / "vmlinux.h",
]


class NoCompiler(Exception):
    pass


def program_command(source: Path, out: Path) -> list[str]:
    cc = shutil.which("clang") or shutil.which("cc")
    if cc is None:
        raise NoCompiler("no C compiler (make installs clang)")
    return [cc, "-O2", "-Wall", "-Werror", "-pthread", str(source), "-o", str(out)]


def library_command(source: Path, out: Path) -> list[str]:
    """A shared library (tests/programs/lib*.c), for ctypes."""
    return [*program_command(source, out)[:-2], "-shared", "-fPIC", "-o", str(out)]


def bpf_command(source: Path, out: Path) -> list[str]:
    """Built like `make` builds ours: against this repository's bpf/ headers and the
    host's vmlinux.h (CO-RE relocates it)."""
    clang = shutil.which("clang")
    if clang is None:
        raise NoCompiler("clang not installed (make installs it)")
    arch = {"x86_64": "x86", "aarch64": "arm64"}.get(os.uname().machine, os.uname().machine)
    return [
        clang, "-g", "-O2", "-target", "bpf", f"-D__TARGET_ARCH_{arch}",
        f"-I{ROOT / 'build'}", f"-I{ROOT / 'bpf'}", "-Wall", "-Werror",
        "-c", str(source), "-o", str(out),
    ]  # fmt: skip


def build(source: Path, scratch: Path | None = None) -> Path:
    """`source` compiled (a program; a shared library for lib*.c; an object for
    *.bpf.c): from the cache, or compiled now into it, or into `scratch` where the
    cache cannot be written."""
    bpf = source.name.endswith(".bpf.c")
    library = not bpf and source.name.startswith("lib")
    stem = source.name.removesuffix(".bpf.c").removesuffix(".c")
    name = f"{stem}.o" if bpf else f"{stem}.so" if library else stem
    command = bpf_command if bpf else library_command if library else program_command
    key = hashlib.sha256()
    for arg in command(Path("SOURCE"), Path("OUT")):
        key.update(arg.encode() + b"\0")
    for path in [source, *(BPF_INPUTS if bpf else [])]:
        key.update(path.read_bytes() + b"\0")
    cached = CACHE / f"{key.hexdigest()[:16]}-{name}"
    if cached.exists():
        return cached
    work = Path(tempfile.mkdtemp(prefix=f"{stem}-", dir=scratch))
    out = work / name
    subprocess.run(command(source, out), check=True)
    try:
        CACHE.mkdir(parents=True, exist_ok=True)
        part = cached.with_name(f".{cached.name}.{os.getpid()}")
        shutil.copy2(out, part)
        os.replace(part, cached)  # whole or not at all, for a build running beside
    except OSError:
        return out  # a read-only repository (a guest): the scratch copy serves
    shutil.rmtree(work, ignore_errors=True)
    return cached


if __name__ == "__main__":
    for src in SOURCES:
        print(build(src).relative_to(ROOT), flush=True)
    sys.exit(0)
