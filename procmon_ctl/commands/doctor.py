"""`procmon-ctl doctor`: check, one line each, what procmon-ctl needs from this host.

Every check gives PASS, WARN, FAIL or INFO, a detail, and for anything that is not
PASS a fix.  FAIL means `load`/`attach` cannot work until it is fixed; WARN means
something is off but procmon-ctl copes (e.g. `load` mounts tracefs itself); INFO
is a fact worth knowing that needs no action.

Doctor itself needs no privileges: run as a normal user it reports what it can
and fails the root check."""

from __future__ import annotations

import gzip
import os
import re
import resource
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from .. import DATA_DIR
from ..errors import Command, MissingError, ProcmonError, Setting, Words, plain
from ..kernel.system import (
    BPFFS_ROOT,
    TRACEFS_ROOT,
    ensure_bpffs,
    ensure_tracefs,
    is_mounted,
    mount_command,
)
from ..views.schema import DoctorCheck, DoctorReport

# A line as the user reads it, from its parts: the CLI passes its own words
# (cli/hints), which spell the options and commands the report names.
Say = Callable[[Words], str]
FIX = Setting("fix")
_EVENTS_FAILED = ("`events ", Setting("failed"), "`")


BTF_VMLINUX = Path("/sys/kernel/btf/vmlinux")
TRACEPOINTS = ("sched_process_fork", "sched_process_exec", "sched_process_exit")
REQUIRED_CONFIG = {
    "CONFIG_BPF_SYSCALL": "the bpf() system call",
    "CONFIG_BPF_EVENTS": "BPF programs on tracepoints",
    "CONFIG_TRACEPOINTS": "the sched_process_* tracepoints",
    "CONFIG_DEBUG_INFO_BTF": "kernel BTF, needed by tp_btf programs and CO-RE",
}
# Capability numbers (linux/capability.h).
CAP_SYS_ADMIN, CAP_PERFMON, CAP_BPF = 21, 38, 39
# Since 5.11 BPF memory is charged to the memory cgroup, not RLIMIT_MEMLOCK.
MEMCG_ACCOUNTING = (5, 11)
# Enough for the default 4 MiB ring plus the small maps, on kernels before 5.11.
MEMLOCK_NEEDED = 8 * 1024 * 1024


def _check(name: str, status: str, detail: str, fix: str | None = None) -> DoctorCheck:
    return DoctorCheck(name=name, status=status, detail=detail, fix=fix)


def kernel_release() -> str:
    return os.uname().release


def kernel_version(release: str | None = None) -> tuple[int, int]:
    m = re.match(r"(\d+)\.(\d+)", release or kernel_release())
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def read_kernel_config() -> tuple[str | None, dict[str, str]]:
    """(where it was read, {CONFIG_X: value}); (None, {}) when no config is readable."""
    candidates = [Path("/proc/config.gz"), Path(f"/boot/config-{kernel_release()}")]
    for path in candidates:
        try:
            if path.suffix == ".gz":
                with gzip.open(path, "rt", errors="replace") as f:
                    text = f.read()
            else:
                text = path.read_text(errors="replace")
        except OSError:
            continue
        values = {}
        for line in text.splitlines():
            if line.startswith("CONFIG_") and "=" in line:
                key, _, value = line.partition("=")
                values[key] = value.strip()
        return str(path), values
    return None, {}


def check_kernel_config() -> list[DoctorCheck]:
    source, config = read_kernel_config()
    if source is None:
        return [
            _check(
                "kernel config",
                "WARN",
                f"neither /proc/config.gz nor /boot/config-{kernel_release()} is readable; "
                "the BTF and tracepoint checks below still test the kernel itself",
                "modprobe configs (gives /proc/config.gz), or install the kernel's config file",
            )
        ]
    checks = []
    for option, why in REQUIRED_CONFIG.items():
        value = config.get(option)
        if value in ("y", "m"):
            checks.append(_check(option, "PASS", f"={value} ({source})"))
        else:
            checks.append(
                _check(
                    option,
                    "FAIL",
                    f"not set in {source}: needed for {why}",
                    f"use a kernel built with {option}=y (most distribution kernels are)",
                )
            )
    sched = config.get("CONFIG_SCHED_TRACER")
    checks.append(
        _check(
            "CONFIG_SCHED_TRACER",
            "INFO",
            f"={sched}"
            if sched
            else "not set: not needed, the sched_process_* tracepoints exist without it",
        )
    )
    return checks


def check_btf() -> DoctorCheck:
    if BTF_VMLINUX.is_file():
        return _check("kernel BTF", "PASS", str(BTF_VMLINUX))
    return _check(
        "kernel BTF",
        "FAIL",
        f"{BTF_VMLINUX} is missing",
        "use a kernel built with CONFIG_DEBUG_INFO_BTF=y",
    )


def _filesystems() -> set[str]:
    try:
        with open("/proc/filesystems") as f:
            return {line.split()[-1] for line in f if line.strip()}
    except OSError:
        return set()


def check_mount(
    name: str,
    fstype: str,
    point: Path,
    ensure: Callable[[], bool],
    fix: bool,
    say: Say = plain,
) -> DoctorCheck:
    cmd = " ".join(mount_command(fstype, point))
    if is_mounted(point, fstype):
        return _check_mount_mode(name, point)
    if fstype not in _filesystems():
        return _check(
            name,
            "FAIL",
            f"the kernel does not know the {fstype} filesystem",
            f"use a kernel with {fstype} support",
        )
    if fix:
        try:
            ensure()
        except ProcmonError as err:
            return _check(
                name,
                "FAIL",
                say((f"not mounted at {point}; ", FIX, " failed: ", *err.words)),
                f"as root: {cmd}",
            )
        return _check(name, "PASS", say((f"mounted at {point} (by ", FIX, ")")))
    return _check(
        name,
        "WARN",
        f"not mounted at {point} (`load` mounts it when run as root)",
        say((Command("doctor", ("fix",), backticks=False), f", or as root: {cmd}")),
    )


def _check_mount_mode(name: str, point: Path) -> DoctorCheck:
    """bpffs mounted without mode=700 is world-writable: anyone may plant a directory
    or a symlink where root's pin dirs go.  procmon-ctl refuses what it meets there,
    but the name is then taken until root removes it."""
    try:
        mode = os.stat(point).st_mode & 0o7777
    except OSError:
        return _check(name, "PASS", f"mounted at {point}")
    if mode & 0o022:
        return _check(
            name,
            "WARN",
            f"mounted at {point}, mode {mode:o}: any user may create entries there "
            "(procmon-ctl refuses those it meets)",
            f"as root: chmod 700 {point} (procmon-ctl and systemd mount it mode 700)",
        )
    return _check(name, "PASS", f"mounted at {point} (mode {mode:o})")


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except OSError:  # e.g. tracefs is root-only: a normal user cannot look
        return False


def _btf_has(names: list[str]) -> dict[str, bool]:
    try:
        data = BTF_VMLINUX.read_bytes()
    except OSError:
        return {}
    return {n: b"\0" + n.encode() + b"\0" in data for n in names}


def check_tracepoints() -> DoctorCheck:
    """The programs are tp_btf: they attach by the BTF typedef btf_trace_<tracepoint>,
    so BTF decides.  tracefs lists the same tracepoints by name when it is mounted."""
    in_btf = _btf_has([f"btf_trace_{tp}" for tp in TRACEPOINTS])
    events = TRACEFS_ROOT / "events" / "sched"
    in_tracefs = (
        {tp: _is_dir(events / tp) for tp in TRACEPOINTS}
        if is_mounted(TRACEFS_ROOT, "tracefs")
        else {}
    )
    found_in = []
    if in_btf and all(in_btf.values()):
        found_in.append("kernel BTF")
    if in_tracefs and all(in_tracefs.values()):
        found_in.append(str(events))
    if in_btf:
        missing = [tp for tp in TRACEPOINTS if not in_btf[f"btf_trace_{tp}"]]
    elif in_tracefs:
        missing = [tp for tp in TRACEPOINTS if not in_tracefs[tp]]
    else:
        return _check(
            "tracepoints",
            "FAIL",
            "cannot check: no kernel BTF and tracefs is not mounted (or not readable)",
            "use a kernel with BTF (CONFIG_DEBUG_INFO_BTF=y); mount tracefs",
        )
    if missing:
        return _check(
            "tracepoints",
            "FAIL",
            f"not in {'kernel BTF' if in_btf else events}: {', '.join(missing)}",
            "use a kernel with CONFIG_TRACEPOINTS=y and BTF (5.5 or later)",
        )
    return _check("tracepoints", "PASS", f"{', '.join(TRACEPOINTS)} (in {' and '.join(found_in)})")


def check_syscall_tracepoints(say: Say = plain) -> DoctorCheck:
    """Only `events --failed` needs them: a WARN, never a FAIL."""
    from ..instance.exec_failures import TRACEPOINTS

    name, wanted = "syscall tracepoints", sorted(set(TRACEPOINTS.values()))
    events = TRACEFS_ROOT / "events" / "syscalls"
    if not is_mounted(TRACEFS_ROOT, "tracefs"):
        return _check(name, "WARN", "cannot check: tracefs is not mounted", "mount tracefs")
    missing = [tp for tp in wanted if not _is_dir(events / tp)]
    if missing:
        return _check(
            name,
            "WARN",
            say((f"not in {events}: {', '.join(missing)}; ", *_EVENTS_FAILED, " cannot work")),
            "use a kernel with CONFIG_FTRACE_SYSCALLS=y",
        )
    return _check(name, "PASS", say((f"{', '.join(wanted)} (for ", *_EVENTS_FAILED, ")")))


def _first_line(argv: list[str]) -> str | None:
    try:
        out = subprocess.run(
            argv, capture_output=True, text=True, timeout=10, env={**os.environ, "LC_ALL": "C"}
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = (out.stdout or out.stderr).strip().splitlines()
    return lines[0].strip() if out.returncode == 0 and lines else None


def check_bpftool() -> DoctorCheck:
    path = shutil.which("bpftool")
    if not path:
        return _check(
            "bpftool",
            "FAIL",
            "not found in PATH",
            "apt-get install bpftool (or run `make`); as root, /usr/sbin must be in PATH",
        )
    from ..kernel import bpftool

    try:
        version = bpftool.version()
    except ProcmonError:
        return _check(
            "bpftool",
            "FAIL",
            f"{path} does not run (`bpftool version` failed)",
            "reinstall it: apt-get install --reinstall bpftool",
        )
    try:
        own = bpftool.can_attach_tracing()
    except ProcmonError:
        own = False
    how = (
        "can attach tracing programs itself"
        if own
        else "cannot attach tracing programs (no autoattach): `attach` uses libbpf"
    )
    return _check("bpftool", "PASS", f"{path} {version}; {how}")


def check_libbpf() -> DoctorCheck:
    from ..kernel import libbpf

    try:
        version = libbpf.version()
    except ProcmonError:
        return _check(
            "libbpf",
            "FAIL",
            "libbpf.so.1 not found (needed by `attach`)",
            "apt-get install libbpf1 (or run `make`)",
        )
    return _check("libbpf", "PASS", f"libbpf.so.1 {version}")


def check_libatomic() -> DoctorCheck:
    from ..kernel import atomics

    if not atomics.available():
        return _check(
            "libatomic",
            "FAIL",
            "libatomic.so.1 not found (the ring buffer reader's acquire loads and release stores)",
            "apt-get install libatomic1 (or run `make`)",
        )
    return _check("libatomic", "PASS", "libatomic.so.1")


def check_clang() -> DoctorCheck:
    path = shutil.which("clang")
    if not path:
        return _check(
            "clang",
            "WARN",
            "not found: needed only to build the BPF object",
            "apt-get install clang llvm (or run `make`)",
        )
    version = _first_line([path, "--version"])
    return _check("clang", "PASS", f"{path} ({version or 'version unknown'})")


def effective_caps() -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return int(line.split()[1], 16)
    except (OSError, ValueError):
        pass
    return None


def check_privileges() -> DoctorCheck:
    caps = effective_caps()
    have = {
        name: caps is not None and bool(caps >> bit & 1)
        for name, bit in (
            ("CAP_BPF", CAP_BPF),
            ("CAP_PERFMON", CAP_PERFMON),
            ("CAP_SYS_ADMIN", CAP_SYS_ADMIN),
        )
    }
    held = (
        ", ".join(n for n, ok in have.items() if ok)
        or "none of CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN"
    )
    if os.geteuid() != 0:
        return _check(
            "root",
            "FAIL",
            f"running as uid {os.geteuid()}, not root",
            "run procmon-ctl as root (sudo)",
        )
    if not (have["CAP_SYS_ADMIN"] or (have["CAP_BPF"] and have["CAP_PERFMON"])):
        return _check(
            "root",
            "FAIL",
            f"root, but the effective capabilities lack "
            f"CAP_BPF+CAP_PERFMON or CAP_SYS_ADMIN (held: {held})",
            "run outside the restricted container/service, or grant CAP_BPF, CAP_PERFMON",
        )
    return _check("root", "PASS", f"uid 0 with {held}")


def check_unprivileged_bpf() -> DoctorCheck:
    path = Path("/proc/sys/kernel/unprivileged_bpf_disabled")
    try:
        value = path.read_text().strip()
    except OSError:
        return _check("kernel.unprivileged_bpf_disabled", "INFO", f"{path} not readable")
    meaning = {
        "0": "unprivileged users may use bpf(); procmon-ctl needs root either way",
        "1": "bpf() is root-only until reboot; procmon-ctl needs root either way",
        "2": "bpf() is root-only (admin may relax it); procmon-ctl needs root either way",
    }.get(value, "unknown value")
    if value == "0":
        return _check(
            "kernel.unprivileged_bpf_disabled",
            "WARN",
            f"= 0: {meaning}",
            "harden: sysctl -w kernel.unprivileged_bpf_disabled=2",
        )
    return _check("kernel.unprivileged_bpf_disabled", "PASS", f"= {value}: {meaning}")


def _limit_text(value: int) -> str:
    return "unlimited" if value == resource.RLIM_INFINITY else f"{value // 1024} KiB"


def check_memlock() -> DoctorCheck:
    soft, _hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    text = _limit_text(soft)
    if kernel_version() >= MEMCG_ACCOUNTING:
        return _check(
            "memlock limit",
            "INFO",
            f"{text}; not used for BPF memory on kernel {kernel_release()} "
            "(5.11+ charges it to the memory cgroup)",
        )
    if soft == resource.RLIM_INFINITY or soft >= MEMLOCK_NEEDED:
        return _check("memlock limit", "PASS", text)
    # Seen on Debian 11's 5.10 with a 64 KiB limit: load works all the same.
    return _check(
        "memlock limit",
        "INFO",
        f"{text}: a kernel before 5.11 counts BPF maps against RLIMIT_MEMLOCK, "
        "but libbpf 1.x (in bpftool and procmon-ctl) raises it for itself as root; "
        "the load check below proves it",
    )


def check_object(explicit: str | None = None, say: Say = plain) -> DoctorCheck:
    from ..instance.startup import PACKAGED_OBJECT, find_object

    try:
        path = find_object(explicit)
    except ProcmonError as err:
        give = ("give ", Setting("object"), " the .bpf.o `make` builds")
        fix = "run `make`" if "make" in err.message else say(give)
        return _check("BPF object", "FAIL", say(err.words), fix)
    source = DATA_DIR.resolve().parent.parent / "bpf" / "process_monitor.bpf.c"
    if (
        path == PACKAGED_OBJECT
        and source.exists()
        and source.stat().st_mtime > path.stat().st_mtime
    ):
        return _check(
            "BPF object", "WARN", f"{path} is older than {source}", "run `make` to rebuild it"
        )
    return _check("BPF object", "PASS", f"{path} (an eBPF ELF object)")


def check_kernel_features() -> DoctorCheck:
    from ..kernel import features

    if os.geteuid() != 0:
        return _check("kernel features", "INFO", "not probed: the probes need root")
    lacking = features.missing()
    if lacking:
        return _check(
            "kernel features",
            "FAIL",
            lacking[0].missing(),
            f"boot Linux {features.MINIMUM_KERNEL} or later with BTF",
        )
    names = ", ".join(f.name.split(" (")[0] for f in features.REQUIRED)
    return _check("kernel features", "PASS", f"{names} (Linux {features.MINIMUM_KERNEL}+)")


TRIAL_PREFIX = "procmon-doctor-"


def check_trial_load(
    object_check: DoctorCheck, explicit: str | None, say: Say = plain
) -> DoctorCheck:
    """Load the object into a pin dir of doctor's own, attach each program for a
    moment, and remove it all: exactly what `load` and `attach` will ask of this
    kernel's verifier, so doctor cannot pass where they would fail."""
    from ..instance.attach import try_attach
    from ..instance.load import load, remove_pins
    from ..instance.pinned import PinnedInstance
    from ..instance.startup import find_object

    name = "load and attach"
    if os.geteuid() != 0:
        return _check(name, "INFO", "not tried: loading BPF programs needs root")
    if object_check.status == "FAIL":
        return _check(name, "INFO", "not tried: no BPF object to load (see above)")
    # `load` mounts what is missing; doctor mounts only when asked to (--fix).
    unmounted = [
        f"{name} at {point}"
        for name, fstype, point in (
            ("bpffs", "bpf", BPFFS_ROOT),
            ("tracefs", "tracefs", TRACEFS_ROOT),
        )
        if not is_mounted(point, fstype)
    ]
    if unmounted:
        return _check(
            name,
            "WARN",
            f"not tried: {' and '.join(unmounted)} not mounted",
            say((Command("doctor", ("fix",), backticks=False), " (mounts them, then tries)")),
        )
    obj = find_object(explicit)
    trial = PinnedInstance.at(BPFFS_ROOT / f"{TRIAL_PREFIX}{os.getpid()}")
    try:
        load(trial, obj)
        try_attach(trial.layout)
    except ProcmonError as err:
        # A rejected program's log is not shown here: `load` prints it.
        return _check(
            name,
            "FAIL",
            getattr(err, "summary", None) or say(err.words),
            say(
                (
                    "use a kernel of the README's table, or report this line with ",
                    Command("doctor", ("json",)),
                    " and `uname -r`",
                )
            ),
        )
    finally:
        remove_pins(trial.layout)
        for path in trial.state_paths():  # its locks and record: the pin dir was ours
            path.unlink(missing_ok=True)
    return _check(
        name,
        "PASS",
        f"{obj.name}: the verifier accepted every program, and "
        "each attached (then all removed again)",
    )


def check_json_formatter(say: Say = plain) -> DoctorCheck:
    from ..views import json_native

    if json_native.library() is None:
        return _check(
            "JSON formatter",
            "WARN",
            say(
                (
                    f"{json_native.problem()}: `events ",
                    Setting("json"),
                    "` uses the Python formatter (same output, several times the CPU per event)",
                )
            ),
            "run `make`",
        )
    return _check("JSON formatter", "PASS", f"{json_native.LIBRARY} (C)")


def run_checks(fix: bool = False, object_path: str | None = None, say: Say = plain) -> DoctorReport:
    """say: the CLI's words for the lines that name an option or a command."""
    checks = [_check("kernel", "INFO", f"Linux {kernel_release()}")]
    checks += check_kernel_config()
    checks.append(check_btf())
    # Mount first, so the tracepoint check can look in tracefs.
    mounts = [
        check_mount("bpffs", "bpf", BPFFS_ROOT, ensure_bpffs, fix, say),
        check_mount("tracefs", "tracefs", TRACEFS_ROOT, ensure_tracefs, fix, say),
    ]
    checks += mounts
    checks.append(check_tracepoints())
    checks.append(check_syscall_tracepoints(say))
    checks += [
        check_bpftool(),
        check_libbpf(),
        check_libatomic(),
        check_clang(),
        check_privileges(),
        check_unprivileged_bpf(),
        check_memlock(),
        check_kernel_features(),
    ]
    object_check = check_object(object_path, say)
    checks += [
        object_check,
        check_trial_load(object_check, object_path, say),
        check_json_formatter(say),
    ]
    failed = [c.name for c in checks if c.status == "FAIL"]
    return DoctorReport(ok=not failed, failed=failed, checks=checks)


def require_ok(report: DoctorReport) -> None:
    if not report.ok:
        raise MissingError(
            f"doctor: {len(report.failed)} check(s) failed: {', '.join(report.failed)}"
        )
