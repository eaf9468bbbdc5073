#!/usr/bin/env python3
"""Record what procmon-ctl shows its user, to compare before and after a refactor (issue 11).

Runs a fixed list of invocations (help, usage errors, state errors, not-root errors,
a real load/attach/events/detach/unload workflow in a private pin dir, run, serve,
stats --watch, schema, doctor) against the package tree given with --tree, and writes
one file per invocation: the command line, who ran it, the exit code, stdout and
stderr, normalised so that two runs of the same code give identical files.  As root:

    .venv/bin/python scripts/cli_transcript.py --tree /work/before --out /work/transcripts/before
    .venv/bin/python scripts/cli_transcript.py --tree . --out /tmp/transcripts/after
    .venv/bin/python scripts/cli_transcript.py --compare /work/transcripts/before \\
        /tmp/transcripts/after          # a unified diff per file, then a summary
                                        # (--brief: the summary only; exit 1 if any differ)

(`diff -ru DIR_A DIR_B` shows the same.)

How the tree is run: as root with this interpreter (--python, default the one running
this script) and PYTHONPATH=<shim>:<tree>, where the shim's sitecustomize.py drops the
editable install's import finder, which would otherwise win over PYTHONPATH and import
the tree `pip install -e` pointed at.  As uid 65534 (`setpriv --reuid 65534 --regid 65534
--clear-groups`) with /usr/bin/python3 when it is the same X.Y (a venv's interpreter may
sit below /root, mode 0700) and PYTHONPATH=<tree>:<the venv's site-packages>, as the tests
do.  Both are checked before anything runs: each must import procmon_ctl from --tree.
Every invocation gets the same small environment (PATH, LANG=C.UTF-8, COLUMNS=80,
TERM=dumb, PYTHONDONTWRITEBYTECODE=1, PROCMON_PIN_DIR) and cwd /, so neither the
caller's shell nor its terminal shows in the output.

Pin dirs: only /sys/fs/bpf/transcript-<pid>{,-none,-run} (never the shared default),
removed on the way out even on failure or Ctrl-C, with their lock files.

Masking (narrow: only values known to vary between two runs of the same code; the
placeholder keeps the width of the text it replaces, padding included, so a table
whose columns move still shows):
  everywhere   the --tree path -> <TREE>; transcript-<our pid> -> transcript-<SELF>
               (pin dirs, lock files); our temporary dir -> <TMP>
  status       program, map and link ids -> <ID>
  stats        counter values once something is attached -> <N> (before attach all
               are 0 and shown as they are)
  stats --watch  rates -> <R>; stdout cut after a fixed number of lines
  events, run  process ids at the places pids are printed (table/--wide columns, --raw
               columns, "pid"/"tgid"/"ppid" in JSON, "(pid N)", --pid/--ppid/--tree
               arguments): the workload's own pids -> <W> (the shell), <W1>..<W4> (its
               children, in the order the workload starts them), this script -> <SELF>,
               any other -> <P1>, <P2>... in order of first appearance in that file;
               ts_ns, duration_ns, wall_ns -> <NS>; durations like 1.3ms -> <DUR>
  serve        the port -> <PORT>; counter and process_* metric values -> <N>
  doctor       the memlock limit (the caller's ulimit) -> <MEMLOCK>
Kernel release, tool versions and the like are host facts that do not change between
runs and stay as they are.

The workload (one fresh copy per `events` invocation, since reading consumes the ring):
/bin/sh -c WORKLOAD (<W>) starts, one after the other, /bin/true (<W1>),
/bin/sh -c 'exec /bin/true' (<W2>), /bin/sh -c 'exit 3' (<W3>) and
/bin/sh -c 'kill -TERM $$' (<W4>).  Its fork event carries this script's comm, set to
"cli_transcript" so that it does not depend on how this script was started.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import difflib
import os
import re
import select
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

BPFFS = Path("/sys/fs/bpf")
NOBODY = ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups"]
COMMANDS = [
    "load",
    "attach",
    "detach",
    "unload",
    "stats",
    "status",
    "events",
    "run",
    "schema",
    "doctor",
    "serve",
]
BASE_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
    "COLUMNS": "80",
    "LINES": "24",
    "TERM": "dumb",
    "PYTHONDONTWRITEBYTECODE": "1",
}
SITECUSTOMIZE = """\
# Written by scripts/cli_transcript.py: drop the editable install's finder, so that
# PYTHONPATH decides which procmon_ctl is imported.
import sys

sys.meta_path[:] = [
    f for f in sys.meta_path if not getattr(f, "__module__", "").startswith("__editable__")
]
"""
WORKLOAD = """\
read go
/bin/true & a=$!; wait $a
/bin/sh -c 'exec /bin/true' & b=$!; wait $b
/bin/sh -c 'exit 3' & c=$!; wait $c
/bin/sh -c 'kill -TERM $$' & d=$!; wait $d
echo $$ $a $b $c $d
"""
WORKLOAD_NOTE = (
    "workload: <W> /bin/sh running, one after the other, <W1> /bin/true, "
    "<W2> /bin/sh -c 'exec /bin/true', <W3> /bin/sh -c 'exit 3', <W4> /bin/sh -c 'kill -TERM $$'"
)
NO_MATCH = "transcript-none"  # a --comm no process has: an empty, deterministic stream


# --- masking ------------------------------------------------------------------------


def _keep_left(alias: str, text: str) -> str:
    """alias in place of text (a left-aligned field and its padding): same width."""
    return alias.ljust(len(text)) if len(alias) < len(text) else alias + " "


def _keep_right(alias: str, lead: str, token: str) -> str:
    """alias in place of lead+token: the same width where lead is a right-aligned
    field's padding (two spaces or more), else lead (a separator) and alias."""
    if len(lead) <= 1:
        return lead + alias
    width = len(lead) + len(token)
    return alias.rjust(width) if len(alias) < width else " " + alias


class PidAliases:
    def __init__(self, known: dict[int, str]):
        self.known = dict(known)
        self.n = 0

    def __call__(self, number: str) -> str:
        pid = int(number)
        if pid not in self.known:
            self.n += 1
            self.known[pid] = f"<P{self.n}>"
        return self.known[pid]


TABLE_ROW = re.compile(r"^(\d+)( +)(\d+)( +)(?=\S)", re.M)
RAW_ROW = re.compile(r"^((?:fork|exec|exit) +)(\d+)( +)(\d+)( +)(\d+)( +)", re.M)
JSON_PID = re.compile(r'"(pid|tgid|ppid)":(\d+)')
TEXT_PID = re.compile(r"\((pid|thread of) (\d+)\)")
NS_FIELD = re.compile(r'"(ts_ns|duration_ns|wall_ns)":\d+')
DURATION = re.compile(r"( *)\b(\d+\.\d+(?:ms|s))\b")


def mask_pids(text: str, alias: PidAliases) -> str:
    def table(m: re.Match) -> str:
        return _keep_left(alias(m[1]), m[1] + m[2]) + _keep_left(alias(m[3]), m[3] + m[4])

    def raw(m: re.Match) -> str:
        return m[1] + "".join(_keep_left(alias(m[i]), m[i] + m[i + 1]) for i in (2, 4, 6))

    text = TABLE_ROW.sub(table, text)
    text = RAW_ROW.sub(raw, text)
    text = JSON_PID.sub(lambda m: f'"{m[1]}":{alias(m[2])}', text)
    return TEXT_PID.sub(lambda m: f"({m[1]} {alias(m[2])})", text)


def mask_times(text: str) -> str:
    text = NS_FIELD.sub(lambda m: f'"{m[1]}":<NS>', text)
    return DURATION.sub(lambda m: _keep_right("<DUR>", m[1], m[2]), text)


def mask_ids(text: str) -> str:
    text = re.sub(r"\b(program|link) \d+\b", r"\1 <ID>", text)
    text = re.sub(r"^(  map \S+ +id )\d+$", r"\1<ID>", text, flags=re.M)
    text = re.sub(r'"(id|link_id)":\d+', r'"\1":<ID>', text)
    return re.sub(r'"maps":\{[^}]*\}', lambda m: re.sub(r":\d+", ":<ID>", m[0]), text)


COUNTERS = "process_count|processes|threads|execs|exits|produced|dropped"


def mask_counters(text: str) -> str:
    text = re.sub(rf"^({COUNTERS})( +)\d+$", r"\1\2<N>", text, flags=re.M)
    return re.sub(rf'"({COUNTERS})":\d+', r'"\1":<N>', text)


def mask_rates(text: str) -> str:
    lines = []
    for line in text.split("\n"):
        if re.fullmatch(r"(?: *-?\d+\.\d+)+", line):
            line = re.sub(r"( *)(-?\d+\.\d+)", lambda m: _keep_right("<R>", m[1], m[2]), line)
        lines.append(re.sub(r'("\w+_per_s": )-?\d+(?:\.\d+)?', r"\1<R>", line))
    return "\n".join(lines)


def mask_serve(text: str) -> str:
    text = re.sub(r"(http://[^\s/]+:)\d+", r"\1<PORT>", text)
    text = re.sub(r"^(procmon_\w+_total(?:\{[^}]*\})?) \S+$", r"\1 <N>", text, flags=re.M)
    return re.sub(r"^(process_\w+(?:\{[^}]*\})?) \S+$", r"\1 <N>", text, flags=re.M)


def mask_doctor(text: str) -> str:
    return re.sub(r"\b\d+ KiB\b|\bunlimited\b", "<MEMLOCK>", text)


MASKS: dict[str, Callable[[str], str]] = {
    "ids": mask_ids,
    "counters": mask_counters,
    "rates": mask_rates,
    "serve": mask_serve,
    "doctor": mask_doctor,
    "times": mask_times,
}


# --- running ------------------------------------------------------------------------


@dataclass
class Result:
    code: str
    stdout: str
    stderr: str
    notes: list[str] = field(default_factory=list)
    extra: list[tuple[str, str]] = field(default_factory=list)


def _text(data: bytes | None) -> str:
    return (data or b"").decode("utf-8", errors="backslashreplace")


def remove_tree(path: Path) -> None:
    if not path.exists():
        return
    for dirpath, dirnames, filenames in os.walk(path, topdown=False):
        for name in filenames:
            (Path(dirpath) / name).unlink(missing_ok=True)
        for name in dirnames:
            (Path(dirpath) / name).rmdir()
    path.rmdir()


def lock_holders() -> set[int]:
    holders = set()
    try:
        with open("/proc/locks") as f:
            for line in f:
                fields = line.split()
                if len(fields) > 4 and fields[1] != "->" and fields[4].isdigit():
                    holders.add(int(fields[4]))
    except OSError:
        pass
    return holders


def set_own_comm(name: bytes) -> None:
    """The workload's fork event shows our comm: make it the same however we were run."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).prctl(15, ctypes.c_char_p(name), 0, 0, 0)  # PR_SET_NAME


class Transcript:
    def __init__(self, tree: Path, out: Path, python: str):
        self.tree = tree
        self.out = out
        self.python = python
        self.pid = os.getpid()
        self.tag = f"transcript-{self.pid}"
        self.pin = BPFFS / self.tag  # the workflow's instance
        self.pin_none = BPFFS / f"{self.tag}-none"  # never loaded
        self.pin_run = BPFFS / f"{self.tag}-run"  # for `run`
        self.tmp = Path(tempfile.mkdtemp(prefix="cli-transcript-"))
        self.shim = self.tmp / "shim"
        self.shim.mkdir()
        (self.shim / "sitecustomize.py").write_text(SITECUSTOMIZE)
        self.site = subprocess.run(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        self.nobody_python = self._nobody_python()
        self.procs: list[subprocess.Popen] = []
        self.n = 0
        self.replacements = sorted(
            {
                (str(tree), "<TREE>"),
                (os.path.realpath(tree), "<TREE>"),
                (self.tag, "transcript-<SELF>"),
                (str(self.tmp), "<TMP>"),
                (os.path.realpath(self.tmp), "<TMP>"),
            },
            key=lambda r: -len(r[0]),
        )

    # -- processes

    def _nobody_python(self) -> str:
        version = subprocess.run(
            [self.python, "-c", "import sys; print(sys.version_info[:2])"],
            capture_output=True,
            text=True,
        ).stdout
        for exe in ("/usr/bin/python3", self.python):
            r = subprocess.run(
                [*NOBODY, exe, "-c", "import sys; print(sys.version_info[:2])"],
                capture_output=True,
                text=True,
                cwd="/",
            )
            if r.returncode == 0 and r.stdout == version:
                return exe
        return self.python

    def command(self, args: list[str], nobody: bool = False, module: bool = True) -> list[str]:
        run = ["-m", "procmon_ctl", *args] if module else args
        if nobody:
            return [*NOBODY, self.nobody_python, *run]
        return [self.python, *run]

    def env(self, extra: dict[str, str] | None, nobody: bool = False) -> dict[str, str]:
        env = {**BASE_ENV, "PROCMON_PIN_DIR": str(self.pin_none)}
        if nobody:
            env["HOME"] = "/nonexistent"
            env["PYTHONPATH"] = f"{self.tree}:{self.site}"
        else:
            env["HOME"] = "/root"
            env["PYTHONPATH"] = f"{self.shim}:{self.tree}"
        env.update(extra or {})
        return env

    def popen(self, argv: list[str], env: dict[str, str], **kw) -> subprocess.Popen:
        proc = subprocess.Popen(argv, env=env, cwd="/", **kw)
        self.procs.append(proc)
        return proc

    def call(
        self,
        args: list[str],
        *,
        nobody: bool = False,
        env: dict[str, str] | None = None,
        timeout: float = 30,
        argv: list[str] | None = None,
    ) -> Result:
        proc = self.popen(
            argv or self.command(args, nobody),
            self.env(env, nobody),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            out, err = proc.communicate(timeout=timeout)
            code = str(proc.returncode)
        except subprocess.TimeoutExpired:
            out, err, rc = self.stop(proc)
            code = f"TIMEOUT after {timeout:g}s (stopped, exit {rc})"
        return Result(code, _text(out), _text(err))

    @staticmethod
    def stop(proc: subprocess.Popen, sig: int = signal.SIGINT) -> tuple[bytes, bytes, int]:
        proc.send_signal(sig)
        try:
            out, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        return out or b"", err or b"", proc.returncode

    @staticmethod
    def read_lines(proc: subprocess.Popen, lines: int, timeout: float) -> bytes:
        fd = proc.stdout.fileno()
        data = b""
        deadline = time.monotonic() + timeout
        while data.count(b"\n") < lines and time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.05)
            if ready:
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    break
                data += chunk
        return data

    @staticmethod
    def wait_for_lock(pid: int, timeout: float = 10) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pid in lock_holders():
                return True
            time.sleep(0.02)
        return False

    # -- the workload

    def workload(self) -> subprocess.Popen:
        return subprocess.Popen(
            ["/bin/sh", "-c", WORKLOAD],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env={"PATH": BASE_ENV["PATH"]},
            cwd="/",
        )

    def workload_pids(self, proc: subprocess.Popen) -> dict[int, str]:
        """Let it go, wait for it; its pids and their aliases."""
        out, _ = proc.communicate(b"go\n", timeout=30)
        pids = [int(p) for p in out.split()]
        if len(pids) != 5 or pids[0] != proc.pid:
            raise RuntimeError(f"workload printed {out!r}")
        return {pid: ("<W>" if i == 0 else f"<W{i}>") for i, pid in enumerate(pids)}

    # -- recording

    def normalise(self, text: str, masks: Iterable[str], alias: PidAliases | None) -> str:
        for old, new in self.replacements:
            text = text.replace(old, new)
        if alias is not None:
            text = mask_pids(text, alias)
        for name in masks:
            text = MASKS[name](text)
        return text

    def write(
        self,
        name: str,
        args: list[str] | None,
        result: Result,
        *,
        nobody: bool = False,
        env: dict[str, str] | None = None,
        masks: Iterable[str] = (),
        pids: dict[int, str] | None = None,
        notes: Iterable[str] = (),
    ) -> Path:
        masks = list(masks)
        alias = None
        if pids is not None:
            alias = PidAliases({self.pid: "<SELF>", **pids})
        self.n += 1
        lines = []
        if args is not None:
            shown = ["procmon-ctl"]
            for i, arg in enumerate(args):
                after = args[i - 1] if i else ""
                if (
                    alias is not None
                    and after in ("--pid", "--ppid", "--tree-of")
                    and arg.isdigit()
                ):
                    shown.append(alias(arg))  # unquoted: <W> is a placeholder
                else:
                    shown.append(shlex.quote(arg))
            lines.append("$ " + " ".join(shown))
            lines.append("# as: uid 65534 (" + " ".join(NOBODY) + ")" if nobody else "# as: root")
            shown_env = {"PROCMON_PIN_DIR": str(self.pin_none), **(env or {})}
            lines.append(
                "# env: " + " ".join(f"{k}={shlex.quote(v)}" for k, v in shown_env.items())
            )
        for note in [*notes, *result.notes]:
            lines.append(f"# {note}")
        lines.append(f"# exit: {result.code}")
        sections = [("stdout", result.stdout), ("stderr", result.stderr), *result.extra]
        for title, text in sections:
            lines.append(f"--- {title} ---")
            if text:
                lines.append(text.removesuffix("\n"))
                if not text.endswith("\n"):
                    lines.append("[no newline at end]")
        body = self.normalise("\n".join(lines) + "\n", masks, alias)
        path = self.out / f"{self.n:03d}-{name}.txt"
        path.write_text(body)
        return path

    def rec(
        self,
        name: str,
        args: list[str],
        *,
        nobody: bool = False,
        env=None,
        masks=(),
        pids=None,
        notes=(),
        timeout: float = 30,
        argv=None,
    ) -> Result:
        result = self.call(args, nobody=nobody, env=env, timeout=timeout, argv=argv)
        self.write(name, args, result, nobody=nobody, env=env, masks=masks, pids=pids, notes=notes)
        return result

    # -- the long-running ones

    def rec_lines(
        self, name: str, args: list[str], lines: int, *, env=None, masks=(), timeout: float = 20
    ) -> None:
        """Start, take the first `lines` lines of stdout, stop with SIGINT."""
        proc = self.popen(
            self.command(args),
            self.env(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        head = self.read_lines(proc, lines, timeout)
        rest, err, rc = self.stop(proc)
        out = b"\n".join((head + rest).split(b"\n")[:lines])
        if (head + rest).count(b"\n") >= lines:
            out += b"\n"
        result = Result(str(rc), _text(out), _text(err))
        result.notes.append(f"stdout: the first {lines} line(s), then SIGINT")
        self.write(name, args, result, env=env, masks=masks)

    def rec_serve(self, name: str, args: list[str], *, env=None) -> None:
        proc = self.popen(
            self.command(args),
            self.env(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        head = self.read_lines(proc, 1, 20)
        m = re.search(rb"http://\S+/metrics", head)
        scrape = "(no URL announced)\n"
        if m:
            try:
                with urllib.request.urlopen(m[0].decode(), timeout=10) as resp:
                    scrape = f"HTTP {resp.status} {resp.headers.get('Content-Type')}\n" + _text(
                        resp.read()
                    )
            except OSError as err:
                scrape = f"GET failed: {err}\n"
        rest, err, rc = self.stop(proc)
        result = Result(str(rc), _text(head + rest), _text(err))
        result.notes.append("GET the announced URL once, then SIGINT")
        result.extra.append(("GET /metrics", scrape))
        self.write(name, args, result, env=env, masks=["serve"])

    # -- cleanup

    def own_pin_dirs(self) -> list[Path]:
        dirs = [self.pin, self.pin_none, self.pin_run]
        for proc in self.procs:  # what `run` and `doctor` name after their pid
            dirs += [BPFFS / f"procmon-run-{proc.pid}", BPFFS / f"procmon-doctor-{proc.pid}"]
        return dirs

    def leftovers(self) -> list[str]:
        found = []
        for d in self.own_pin_dirs():
            if d.exists():
                found.append(str(d))
                found += sorted(f"  {p.relative_to(d)}" for p in d.rglob("*"))
        return found

    def cleanup(self) -> list[str]:
        for proc in self.procs:
            if proc.poll() is None:
                self.stop(proc)
        removed = []
        for d in self.own_pin_dirs():
            if d.exists():
                remove_tree(d)
                removed.append(str(d))
        shutil.rmtree(self.tmp, ignore_errors=True)
        return removed


# --- the invocations ------------------------------------------------------------------


def preflight(t: Transcript) -> None:
    """Each way of running must import procmon_ctl from --tree."""
    want = str(t.tree / "procmon_ctl" / "__init__.py")
    code = ["-c", "import typer, pydantic, procmon_ctl; print(procmon_ctl.__file__)"]
    for nobody in (False, True):
        r = t.call([], nobody=nobody, argv=t.command(code, nobody, module=False))
        got = r.stdout.strip()
        if r.code != "0" or os.path.realpath(got) != os.path.realpath(want):
            who = "uid 65534" if nobody else "root"
            sys.exit(
                f"cli_transcript: as {who}, procmon_ctl is not imported from {t.tree} "
                f"(got {got or r.stderr.strip()!r}): the tree must be readable by that user, "
                f"and --python must have procmon-ctl's dependencies"
            )


def help_and_usage(t: Transcript) -> None:
    t.rec("no-args", [])
    t.rec("help", ["--help"])
    t.rec("help-h", ["-h"])
    t.rec("version", ["--version"])
    # Typer finds the shell among the parent processes: run it from bash.
    cmd = t.command(["--show-completion"])
    t.rec(
        "show-completion",
        ["--show-completion"],
        notes=["run from bash -c"],
        argv=["/bin/bash", "-c", '"$@"; exit $?', "bash", *cmd],
    )
    for c in COMMANDS:
        t.rec(f"help-{c}", [c, "--help"])
        t.rec(f"help-{c}-h", [c, "-h"])
    t.rec("help-unknown-command", ["bogus", "--help"])

    usage = [
        ("unknown-command", ["bogus"]),
        ("unknown-global-option", ["--bogus", "status"]),
        ("unknown-option", ["stats", "--bogus"]),
        ("extra-argument", ["status", "extra"]),
        ("pin-dir-without-value", ["--pin-dir"]),
        ("pin-dir-relative", ["--pin-dir", "relative/dir", "status"]),
        ("pin-dir-outside-bpffs", ["--pin-dir", "/tmp/procmon-transcript-x", "status"]),
        ("pin-dir-bpffs-root", ["--pin-dir", "/sys/fs/bpf", "status"]),
        ("pin-dir-with-dot", ["--pin-dir", f"{t.pin}.x", "status"]),
        ("load-ring-size-1000", ["load", "--ring-size", "1000"]),
        ("load-ring-size-not-int", ["load", "--ring-size", "big"]),
        ("load-ring-size-too-big", ["load", "--ring-size", str(1 << 31)]),
        ("load-object-missing", ["load", "--object", "/nonexistent/x.bpf.o"]),
        ("load-object-not-elf", ["load", "--object", "/etc/passwd"]),
        ("load-object-directory", ["load", "--object", "/etc"]),
        ("load-object-not-bpf", ["load", "--object", "/bin/true"]),
        ("attach-events-bogus", ["attach", "--events", "bogus"]),
        ("attach-events-partly-bogus", ["attach", "--events", "fork,bogus"]),
        ("attach-events-empty", ["attach", "--events", ""]),
        ("detach-events-bogus", ["detach", "--events", "bogus"]),
        ("events-count-0", ["events", "--count", "0"]),
        ("events-n-negative", ["events", "-n", "-1"]),
        ("events-count-not-int", ["events", "--count", "many"]),
        ("events-duration-negative", ["events", "--duration", "-1"]),
        ("events-duration-0", ["events", "--duration", "0"]),
        ("events-pid-not-int", ["events", "--pid", "abc"]),
        ("events-json-raw", ["events", "--json", "--raw"]),
        ("events-raw-wide", ["events", "--raw", "--wide"]),
        ("events-json-wide", ["events", "--json", "--wide"]),
        ("events-json-raw-wide", ["events", "--json", "--raw", "--wide"]),
        ("events-output-empty", ["events", "--output", ""]),
        ("events-output-raw", ["events", "--output", f"{t.tmp}/never.jsonl", "--raw"]),
        ("stats-watch-interval-0", ["stats", "--watch", "--interval", "0"]),
        ("stats-watch-interval-negative", ["stats", "--watch", "--interval", "-1"]),
        ("stats-interval-not-number", ["stats", "--interval", "soon"]),
        ("serve-port-70000", ["serve", "--port", "70000"]),
        ("serve-port-not-int", ["serve", "--port", "http"]),
        ("serve-object-without-attach", ["serve", "--object", "/nonexistent/x.bpf.o"]),
        ("run-count-0", ["run", "--count", "0", "--", "true"]),
        ("run-json-raw", ["run", "--json", "--raw", "--", "true"]),
        (
            "run-ring-size-1000",
            ["run", "--ring-size", "1000", "--", "true"],
        ),
        ("run-command-missing", ["run", "--", "/nonexistent/cmd"]),
        ("doctor-unknown-option", ["doctor", "--bogus"]),
        ("schema-unknown-option", ["schema", "--json"]),
    ]
    for name, args in usage:
        t.rec(f"usage-{name}", args)
    t.rec("usage-pin-dir-env-relative", ["status"], env={"PROCMON_PIN_DIR": "relative/dir"})


def not_loaded(t: Transcript) -> None:
    for name, args in [
        ("status", ["status"]),
        ("status-json", ["status", "--json"]),
        ("stats", ["stats"]),
        ("stats-json", ["stats", "--json"]),
        ("stats-watch", ["stats", "--watch", "--interval", "0.2"]),
        ("events", ["events", "--duration", "0.2"]),
        ("events-json", ["events", "--json", "--duration", "0.2"]),
        ("attach", ["attach"]),
        ("detach", ["detach"]),
        ("unload", ["unload"]),
        ("serve", ["serve", "--port", "0"]),
        ("serve-port-70000", ["serve", "--port", "70000"]),
    ]:
        t.rec(f"not-loaded-{name}", args, timeout=10)


NOBODY_ARGS = [
    ("version", ["--version"]),
    ("help", ["--help"]),
    ("status", ["status"]),
    ("status-json", ["status", "--json"]),
    ("stats", ["stats"]),
    ("stats-json", ["stats", "--json"]),
    ("events", ["events", "--duration", "0.2"]),
    ("load", ["load"]),
    ("attach", ["attach"]),
    ("detach", ["detach"]),
    ("unload", ["unload"]),
    ("serve", ["serve", "--port", "0"]),
    ("schema", ["schema"]),
]


def not_root(t: Transcript) -> None:
    for name, args in NOBODY_ARGS:
        t.rec(f"not-root-{name}", args, nobody=True, timeout=10)
    run = ["run", "--", "true"]
    t.rec("not-root-run", run, nobody=True, timeout=10)
    t.rec("not-root-doctor", ["doctor"], nobody=True, masks=["doctor"])
    t.rec("not-root-doctor-json", ["doctor", "--json"], nobody=True, masks=["doctor"])


def events_of_workload(t: Transcript, env: dict[str, str]) -> None:
    """One fresh workload per reader: reading consumes the ring."""
    cases = [
        ("table-tree", ["events", "--tree-of", "{W}", "--duration", "1"]),
        ("wide-tree", ["events", "--wide", "--tree-of", "{W}", "--duration", "1"]),
        ("raw-tree", ["events", "--raw", "--tree-of", "{W}", "--duration", "1"]),
        ("json-tree", ["events", "--json", "--tree-of", "{W}", "--duration", "1"]),
        ("json-pid", ["events", "--json", "--pid", "{W}", "--duration", "1"]),
        ("table-ppid", ["events", "--ppid", "{W}", "--duration", "1"]),
        (
            "wide-ppid-comm-true",
            ["events", "--wide", "--ppid", "{W}", "--comm", "true", "--duration", "1"],
        ),
        (
            "raw-ppid-comm-true",
            ["events", "--raw", "--ppid", "{W}", "--comm", "true", "--duration", "1"],
        ),
        (
            "raw-tree-uid-0",
            ["events", "--raw", "--tree-of", "{W}", "--uid", "0", "--duration", "1"],
        ),
        (
            "table-tree-uid-65534",
            ["events", "--tree-of", "{W}", "--uid", "65534", "--duration", "1"],
        ),
        ("table-tree-count-2", ["events", "--tree-of", "{W}", "--count", "2"]),
        ("json-tree-n-3", ["events", "--json", "--tree-of", "{W}", "-n", "3"]),
        (
            "wide-tree-threads",
            ["events", "--wide", "--threads", "--tree-of", "{W}", "--duration", "1"],
        ),
    ]
    for name, template in cases:
        wl = t.workload()
        pids = t.workload_pids(wl)
        args = [a.replace("{W}", str(wl.pid)) for a in template]
        t.rec(
            f"workflow-events-{name}",
            args,
            env=env,
            masks=["times"],
            pids=pids,
            notes=[WORKLOAD_NOTE],
            timeout=20,
        )

    # --output: the JSON lines go to a file.
    wl = t.workload()
    pids = t.workload_pids(wl)
    out_file = t.tmp / "events.jsonl"
    args = ["events", "--output", str(out_file), "--tree-of", str(wl.pid), "--duration", "1"]
    result = t.call(args, env=env, timeout=20)
    content = out_file.read_text() if out_file.exists() else "(no file)\n"
    result.extra.append((f"file {out_file}", content))
    t.write(
        "workflow-events-output-file",
        args,
        result,
        env=env,
        masks=["times"],
        pids=pids,
        notes=[WORKLOAD_NOTE],
    )

    # --from-now: the reader starts first (the workload waits for it), so the
    # workload's own fork and exec are behind it and only what follows shows.
    wl = t.workload()
    args = ["events", "--from-now", "--json", "--tree-of", str(wl.pid), "--duration", "3"]
    reader = t.popen(
        t.command(args),
        t.env(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    t.wait_for_lock(reader.pid)
    time.sleep(0.3)
    pids = t.workload_pids(wl)
    try:
        out, err = reader.communicate(timeout=20)
        code = str(reader.returncode)
    except subprocess.TimeoutExpired:
        out, err, rc = t.stop(reader)
        code = f"TIMEOUT (stopped, exit {rc})"
    t.write(
        "workflow-events-from-now",
        args,
        Result(code, _text(out), _text(err)),
        env=env,
        masks=["times"],
        pids=pids,
        notes=[WORKLOAD_NOTE, "the workload starts once the reader holds the ring"],
    )


def second_reader(t: Transcript, env: dict[str, str]) -> None:
    first = ["events", "--comm", NO_MATCH]
    reader = t.popen(
        t.command(first),
        t.env(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    held = t.wait_for_lock(reader.pid)
    time.sleep(0.3)
    t.rec(
        "workflow-events-second-reader",
        ["events", "--duration", "1"],
        env=env,
        timeout=10,
        notes=["while another `events` reads this pin dir"],
    )
    out, err, rc = t.stop(reader)
    result = Result(str(rc), _text(out), _text(err))
    result.notes.append("the first reader, stopped with SIGINT after the second was refused")
    if not held:
        result.notes.append("(it never showed in /proc/locks)")
    t.write("workflow-events-first-reader", first, result, env=env)


def workflow(t: Transcript) -> None:
    env = {"PROCMON_PIN_DIR": str(t.pin)}
    t.rec("workflow-load", ["load"], env=env)
    t.rec("workflow-load-again", ["load"], env=env)
    t.rec("workflow-status-loaded", ["status"], env=env, masks=["ids"])
    t.rec("workflow-status-loaded-json", ["status", "--json"], env=env, masks=["ids"])
    t.rec("workflow-stats-before-attach", ["stats"], env=env)
    t.rec("workflow-stats-before-attach-json", ["stats", "--json"], env=env)
    t.rec("workflow-events-nothing-attached", ["events", "--duration", "0.3"], env=env)
    t.rec("workflow-unload-explicit-pin-dir", ["--pin-dir", str(t.pin), "unload"])
    t.rec("workflow-load-explicit-pin-dir", ["--pin-dir", str(t.pin), "load"])
    t.rec("workflow-attach", ["attach"], env=env)
    t.rec("workflow-attach-again", ["attach"], env=env)
    t.rec("workflow-status-attached", ["status"], env=env, masks=["ids"])
    t.rec("workflow-status-attached-json", ["status", "--json"], env=env, masks=["ids"])
    for name, args in [
        ("status", ["status"]),
        ("stats", ["stats", "--json"]),
        ("events", ["events", "--duration", "0.2"]),
        ("detach", ["detach"]),
        ("unload", ["unload"]),
    ]:
        t.rec(
            f"workflow-not-root-{name}",
            args,
            nobody=True,
            env=env,
            timeout=10,
            masks=["ids", "counters"],
        )
    t.rec("workflow-status-after-not-root", ["status"], env=env, masks=["ids"])
    events_of_workload(t, env)
    second_reader(t, env)
    t.rec("workflow-stats", ["stats"], env=env, masks=["counters"])
    t.rec("workflow-stats-json", ["stats", "--json"], env=env, masks=["counters"])
    t.rec_lines(
        "workflow-stats-watch",
        ["stats", "--watch", "--interval", "0.4"],
        3,
        env=env,
        masks=["rates"],
    )
    t.rec_lines(
        "workflow-stats-watch-json",
        ["stats", "--watch", "--json", "--interval", "0.4"],
        2,
        env=env,
        masks=["rates"],
    )
    t.rec_serve("workflow-serve", ["serve", "--port", "0"], env=env)
    t.rec("workflow-serve-port-70000", ["serve", "--port", "70000"], env=env, timeout=10)
    t.rec("workflow-serve-attach-loaded", ["serve", "--attach", "--port", "0"], env=env, timeout=10)
    t.rec("workflow-run-loaded-pin-dir", ["--pin-dir", str(t.pin), "run", "--", "true"])
    t.rec("workflow-detach-exec", ["detach", "--events", "exec"], env=env)
    t.rec("workflow-status-exec-detached", ["status"], env=env, masks=["ids"])
    t.rec("workflow-detach-exec-again", ["detach", "--events", "exec"], env=env)
    t.rec("workflow-attach-fork-exec", ["attach", "--events", "fork,exec"], env=env)
    t.rec("workflow-attach-all-again", ["attach", "--events", "exit,fork,exec"], env=env)
    t.rec("workflow-detach", ["detach"], env=env)
    t.rec("workflow-detach-again", ["detach"], env=env)
    t.rec("workflow-status-detached", ["status", "--json"], env=env, masks=["ids"])
    t.rec("workflow-events-detached", ["events", "--comm", NO_MATCH, "--duration", "0.3"], env=env)
    t.rec("workflow-stats-detached", ["stats"], env=env, masks=["counters"])
    t.rec("workflow-unload", ["unload"], env=env)
    t.rec("workflow-unload-again", ["unload"], env=env)
    t.rec("workflow-status-unloaded", ["status"], env=env)


def run_command(t: Transcript) -> None:
    pin = ["--pin-dir", str(t.pin_run)]
    for name, args in [
        ("exit-3", ["run", "--", "sh", "-c", "exit 3"]),
        ("json-true", ["run", "--json", "--", "true"]),
        ("sigterm", ["run", "--", "sh", "-c", "kill -TERM $$"]),
        ("wide-children", ["run", "--wide", "--", "sh", "-c", "/bin/true; exit 0"]),
        ("json-exit-3", ["run", "--json", "--", "sh", "-c", "/bin/true; exit 3"]),
        ("ring-size", ["run", "--ring-size", "65536", "--", "true"]),
        ("monitor-duration", ["run", "--comm", NO_MATCH, "--duration", "0.5"]),
    ]:
        t.rec(f"run-{name}", [*pin, *args], masks=["times"], pids={})
    t.rec(
        "run-env-pin-dir",
        ["run", "--", "sh", "-c", "exit 3"],
        masks=["times"],
        pids={},
        env={"PROCMON_PIN_DIR": str(t.pin_run)},
    )


def schema_and_doctor(t: Transcript) -> None:
    t.rec("schema", ["schema"])
    t.rec("doctor", ["doctor"], masks=["doctor"], timeout=60)
    t.rec("doctor-json", ["doctor", "--json"], masks=["doctor"], timeout=60)
    t.rec(
        "doctor-object-not-elf", ["doctor", "--object", "/etc/passwd"], masks=["doctor"], timeout=60
    )


def record(tree: Path, out: Path, python: str) -> int:
    if os.geteuid() != 0:
        sys.exit("cli_transcript: run as root (the workflow loads BPF programs)")
    if not (tree / "procmon_ctl" / "__init__.py").is_file():
        sys.exit(f"cli_transcript: {tree} holds no procmon_ctl package")
    if not shutil.which("setpriv"):
        sys.exit("cli_transcript: setpriv is needed for the not-root invocations")
    set_own_comm(b"cli_transcript")
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with it ignored
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGHUP, lambda *_: sys.exit(129))
    started = time.monotonic()
    t = Transcript(tree, out, python)
    try:
        preflight(t)
        out.mkdir(parents=True, exist_ok=True)
        for old in out.glob("[0-9][0-9][0-9]-*.txt"):  # only once the tree is known to run
            old.unlink()
        help_and_usage(t)
        not_loaded(t)
        not_root(t)
        workflow(t)
        run_command(t)
        schema_and_doctor(t)
        left = t.leftovers()
        t.write(
            "leftover-pins",
            None,
            Result("-", "\n".join(left) + "\n" if left else "", ""),
            notes=[
                "check: pin dirs of this transcript still present after everything above "
                "(none expected)"
            ],
        )
    finally:
        removed = t.cleanup()
        if removed:
            print(f"cli_transcript: cleanup removed {', '.join(removed)}", file=sys.stderr)
    print(
        f"wrote {t.n} files to {out} in {time.monotonic() - started:.0f}s "
        f"(python {python}; as uid 65534: {t.nobody_python})"
    )
    return 0


# --- comparing ----------------------------------------------------------------------


def compare(a: Path, b: Path, brief: bool) -> int:
    names_a = {p.name for p in a.glob("*.txt")}
    names_b = {p.name for p in b.glob("*.txt")}
    differ = []
    for name in sorted(names_a & names_b):
        old = (a / name).read_text().splitlines(keepends=True)
        new = (b / name).read_text().splitlines(keepends=True)
        if old == new:
            continue
        differ.append(name)
        if not brief:
            sys.stdout.writelines(difflib.unified_diff(old, new, f"{a}/{name}", f"{b}/{name}"))
            print()
    same = len(names_a & names_b) - len(differ)
    print(
        f"{same} identical, {len(differ)} differ, {len(names_a - names_b)} only in {a}, "
        f"{len(names_b - names_a)} only in {b}"
    )
    for title, names in (
        ("differ", differ),
        (f"only in {a}", sorted(names_a - names_b)),
        (f"only in {b}", sorted(names_b - names_a)),
    ):
        if names:
            print(f"{title}:")
            print("".join(f"  {n}\n" for n in names), end="")
    return 1 if differ or names_a != names_b else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tree", type=Path, help="the repository whose procmon_ctl to run")
    parser.add_argument("--out", type=Path, help="directory for the transcript files")
    parser.add_argument(
        "--python",
        default=sys.executable,
        help="interpreter with procmon-ctl's dependencies [default: this one]",
    )
    parser.add_argument(
        "--compare",
        nargs=2,
        type=Path,
        metavar=("DIR_A", "DIR_B"),
        help="print a unified diff of two transcripts and a summary",
    )
    parser.add_argument("--brief", action="store_true", help="with --compare: the summary only")
    args = parser.parse_args()
    if args.compare:
        try:
            return compare(*args.compare, args.brief)
        except BrokenPipeError:  # | head
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 1
    if not args.tree or not args.out:
        parser.error("give --tree and --out (or --compare DIR_A DIR_B)")
    try:
        return record(args.tree.resolve(), args.out, args.python)
    except KeyboardInterrupt:
        print(
            "cli_transcript: interrupted (pins removed); the transcript is incomplete",
            file=sys.stderr,
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
