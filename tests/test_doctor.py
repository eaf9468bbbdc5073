"""`procmon-ctl doctor` on the real machine, and `--fix` mounting tracefs/bpffs again.

Mount changes happen only inside a private mount namespace (`unshare -m`), so the
tests running next to these never see tracefs or bpffs disappear."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import AS_NOBODY, CLI, ROOT, in_private_mount_ns, nobody_env, nobody_python

from procmon_ctl.commands.doctor import (
    MEMCG_ACCOUNTING,
    MEMLOCK_NEEDED,
    TRIAL_PREFIX,
    kernel_version,
    read_kernel_config,
    run_checks,
)
from procmon_ctl.instance.pinned import PinnedInstance
from procmon_ctl.kernel import system
from procmon_ctl.kernel.system import BPFFS_ROOT
from procmon_ctl.views.doctor import NAME_COLUMN_MAX, render_table
from procmon_ctl.views.schema import DoctorCheck, DoctorReport

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


def doctor(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*CLI, "doctor", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def doctor_and_its_pid(*args: str) -> tuple[subprocess.CompletedProcess, int]:
    """doctor, and its pid: its trial pin dir is named after it."""
    with subprocess.Popen(
        [*CLI, "doctor", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as p:
        try:
            out, err = p.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            p.kill()
            raise
    return subprocess.CompletedProcess(p.args, p.returncode, out, err), p.pid


def by_name(report: dict) -> dict[str, dict]:
    return {c["name"]: c for c in report["checks"]}


@needs_root
def test_doctor_passes_here():
    r = doctor()
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stderr == ""
    assert "Traceback" not in r.stdout
    lines = r.stdout.splitlines()
    assert lines[-1].endswith("0 failed")
    statuses = {ln.split()[0] for ln in lines[:-1] if ln and not ln.startswith(" ")}
    assert statuses <= {"PASS", "WARN", "FAIL", "INFO"}


@pytest.mark.kernel
@needs_root
def test_doctor_json_matches_machine():
    r = doctor("--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    DoctorReport.model_validate(report)
    assert report["ok"] is True and report["failed"] == []
    checks = by_name(report)
    for option in (
        "CONFIG_BPF_SYSCALL",
        "CONFIG_BPF_EVENTS",
        "CONFIG_TRACEPOINTS",
        "CONFIG_DEBUG_INFO_BTF",
    ):
        assert checks[option]["status"] == "PASS"
    # Not set on this kernel, and the tracepoints work anyway: never a failure.
    _, config = read_kernel_config()
    assert checks["CONFIG_SCHED_TRACER"]["status"] == "INFO"
    if "CONFIG_SCHED_TRACER" not in config:
        assert "not needed" in checks["CONFIG_SCHED_TRACER"]["detail"]
    assert checks["kernel BTF"]["status"] == "PASS"
    assert checks["tracepoints"]["status"] == "PASS"
    assert "sched_process_fork" in checks["tracepoints"]["detail"]
    assert checks["syscall tracepoints"]["status"] == "PASS"
    assert "sys_exit_execveat" in checks["syscall tracepoints"]["detail"]
    bpftool_version = subprocess.run(
        ["bpftool", "version"], capture_output=True, text=True
    ).stdout.split()[1]
    assert bpftool_version in checks["bpftool"]["detail"]
    assert checks["root"]["status"] == "PASS"
    assert "CAP_BPF" in checks["root"]["detail"]
    sysctl = Path("/proc/sys/kernel/unprivileged_bpf_disabled").read_text().strip()
    assert f"= {sysctl}" in checks["kernel.unprivileged_bpf_disabled"]["detail"]
    # 5.11+ charges BPF memory to the memory cgroup; older kernels count it in memlock.
    soft = resource.getrlimit(resource.RLIMIT_MEMLOCK)[0]
    enough = soft == resource.RLIM_INFINITY or soft >= MEMLOCK_NEEDED
    memlock = "PASS" if kernel_version() < MEMCG_ACCOUNTING and enough else "INFO"
    assert checks["memlock limit"]["status"] == memlock
    assert checks["kernel features"]["status"] == "PASS"
    assert checks["load and attach"]["status"] == "PASS"
    assert checks["BPF object"]["status"] == "PASS"
    assert checks["JSON formatter"]["status"] == "PASS"
    for c in report["checks"]:
        if c["status"] in ("FAIL", "WARN"):
            assert c["fix"], f"{c['name']} gives no fix"


@needs_root
def test_doctor_missing_object_fails_with_fix(tmp_path):
    r = doctor("--object", str(tmp_path / "nope.bpf.o"), "--json")
    assert r.returncode == 4
    report = json.loads(r.stdout)
    assert report["failed"] == ["BPF object"]
    assert by_name(report)["BPF object"]["fix"]
    assert r.stderr.strip().splitlines() == [
        "procmon-ctl: error: doctor: 1 check(s) failed: BPF object"
    ]


@needs_root
def test_doctor_without_bpftool_fails(tmp_path):
    # A PATH with python but without bpftool (/usr/sbin).
    r = doctor("--json", env={"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"})
    assert r.returncode == 4
    report = json.loads(r.stdout)
    assert "bpftool" in report["failed"]
    assert "apt-get install bpftool" in by_name(report)["bpftool"]["fix"]


def test_table_has_fix_for_each_failure():
    report = run_checks(object_path="/nonexistent/x.bpf.o")
    lines = render_table(report).splitlines()
    failing = [i for i, line in enumerate(lines) if line.startswith(("FAIL", "WARN"))]
    assert failing, lines  # the missing object, at least
    for i in failing:
        # A name too long for its column has its detail on the next line.
        below = lines[i + 2] if "  " not in lines[i][6:] else lines[i + 1]
        assert below.strip().startswith("fix: "), lines[i]


def test_table_columns_hold_whatever_the_name_lengths():
    """A name longer than the column has a line of its own; the details and fixes of
    all the others start in one column; on a terminal long text is folded there."""
    long_name = "x" * (NAME_COLUMN_MAX + 10)
    report = DoctorReport(
        ok=False,
        failed=["a"],
        checks=[
            DoctorCheck(name="a", status="FAIL", detail=" ".join("d" * 60), fix=" ".join("f" * 60)),
            DoctorCheck(name=long_name, status="WARN", detail="short", fix="do this"),
            DoctorCheck(name="b" * NAME_COLUMN_MAX, status="PASS", detail="fine"),
        ],
    )
    at = 4 + 2 + NAME_COLUMN_MAX + 2
    whole = render_table(report).splitlines()
    assert whole == [
        f"FAIL  {'a':<{NAME_COLUMN_MAX}}  {'d ' * 59}d",
        f"{'':<{at}}fix: {'f ' * 59}f",
        f"WARN  {long_name}",
        f"{'':<{at}}short",
        f"{'':<{at}}fix: do this",
        f"PASS  {'b' * NAME_COLUMN_MAX}  fine",
        "1 passed, 1 warnings, 1 failed",
    ]
    folded = render_table(report, 80).splitlines()
    assert all(len(line) <= 80 for line in folded), folded
    assert folded[0] == f"FAIL  {'a':<{NAME_COLUMN_MAX}}  {'d ' * 25}d"
    assert folded[1] == f"{'':<{at}}{'d ' * 25}d"
    fix = [line for line in folded if line.startswith(f"{'':<{at}}fix: ")]
    assert fix == [f"{'':<{at}}fix: {'f ' * 22}f", f"{'':<{at}}fix: do this"]
    i = folded.index(fix[0])  # its next lines hang under its text
    assert folded[i + 1 : i + 3] == [f"{'':<{at + 5}}{'f ' * 22}f", f"{'':<{at + 5}}{'f ' * 13}f"]


def _mount_types() -> dict[str, str]:
    return dict(system.mounts())


@needs_root
def test_fix_mounts_tracefs_and_bpffs_again():
    host_before = _mount_types()
    assert host_before.get("/sys/kernel/tracing") == "tracefs"
    r = in_private_mount_ns("""
        tmp=$(mktemp)
        umount /sys/kernel/tracing
        umount /sys/fs/bpf
        $CLI doctor --json > "$tmp" || true
        echo "before: $(mountpoint -q /sys/kernel/tracing && echo mounted || echo unmounted)"
        $CLI doctor --fix --json
        mountpoint -q /sys/kernel/tracing && echo "after: tracefs mounted"
        mountpoint -q /sys/fs/bpf && echo "after: bpffs mounted"
        cat "$tmp" >&2
        rm -f "$tmp"
    """)
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout.splitlines()
    assert "before: unmounted" in out
    assert "after: tracefs mounted" in out
    assert "after: bpffs mounted" in out
    fixed = by_name(json.loads(next(ln for ln in out if ln.startswith("{"))))
    assert fixed["tracefs"]["status"] == "PASS" and "--fix" in fixed["tracefs"]["detail"]
    assert fixed["bpffs"]["status"] == "PASS" and "--fix" in fixed["bpffs"]["detail"]
    before = by_name(json.loads(r.stderr.strip().splitlines()[-1]))
    assert before["tracefs"]["status"] == "WARN"
    assert "doctor --fix" in before["tracefs"]["fix"]
    assert before["bpffs"]["status"] == "WARN"
    # The tracepoint check still passes without tracefs: BTF decides.
    assert before["tracepoints"]["status"] == "PASS"
    # The host never saw any of it.
    assert _mount_types().get("/sys/kernel/tracing") == "tracefs"
    assert _mount_types().get("/sys/fs/bpf") == "bpf"


@needs_root
def test_without_fix_nothing_is_mounted():
    r = in_private_mount_ns("""
        umount /sys/kernel/tracing
        $CLI doctor > /dev/null
        mountpoint -q /sys/kernel/tracing && echo mounted || echo unmounted
    """)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "unmounted", "doctor without --fix must not mount anything"


@needs_root
def test_doctor_as_nobody_fails_root_check():
    py = nobody_python()
    if py is None:
        pytest.skip("no python that uid 65534 can run")
    r = subprocess.run(
        [*AS_NOBODY, py, "-m", "procmon_ctl", "doctor", "--json"],
        capture_output=True,
        text=True,
        cwd="/",
        env=nobody_env(),
        timeout=60,
    )
    assert "Traceback" not in r.stderr
    assert r.returncode == 4, r.stderr
    report = json.loads(r.stdout)
    assert report["failed"] == ["root"]
    assert by_name(report)["root"]["fix"] == "run procmon-ctl as root (sudo)"


@needs_root
def test_fix_as_nobody_fails_with_a_fix():
    """--fix cannot mount as a normal user: the mount check FAILs with the command
    to run as root, and nothing is mounted."""
    py = nobody_python()
    if py is None:
        pytest.skip("no python that uid 65534 can run")
    pythonpath = nobody_env()["PYTHONPATH"]
    r = in_private_mount_ns(f"""
        umount /sys/kernel/tracing
        cd /
        env PATH=/usr/sbin:/usr/bin:/bin PYTHONDONTWRITEBYTECODE=1 PYTHONPATH={pythonpath} \\
            setpriv --reuid=65534 --regid=65534 --clear-groups \\
            {py} -m procmon_ctl doctor --fix --json || echo "exit $?"
        mountpoint -q /sys/kernel/tracing && echo mounted || echo unmounted
    """)
    assert r.returncode == 0, r.stderr
    out = r.stdout.splitlines()
    assert out[-2:] == ["exit 4", "unmounted"]
    tracefs = by_name(json.loads(out[0]))["tracefs"]
    assert tracefs["status"] == "FAIL"
    assert "--fix failed: permission denied" in tracefs["detail"]
    assert tracefs["fix"] == "as root: mount -t tracefs tracefs /sys/kernel/tracing"


def test_doctor_warns_when_the_json_formatter_is_not_built(monkeypatch, tmp_path):
    from procmon_ctl.commands import doctor as doctor_mod
    from procmon_ctl.views import json_native

    monkeypatch.setattr(json_native, "LIBRARY", tmp_path / "libprocmon_json.so")
    json_native._load.cache_clear()
    try:
        check = doctor_mod.check_json_formatter()
    finally:
        json_native._load.cache_clear()
    assert check.status == "WARN"
    assert "not built" in check.detail and check.fix == "run `make`"


# --- doctor against load, on every kernel of the matrix ---------------------------

PROGRAMS_DIR = ROOT / "tests" / "programs"


@pytest.fixture(scope="module")
def objects(tmp_path_factory) -> dict[str, Path]:
    from conftest import OBJECT, build_bpf_object

    return {
        "built": OBJECT,
        "group_dead": build_bpf_object(tmp_path_factory, PROGRAMS_DIR / "group_dead_exit.bpf.c"),
        "never": build_bpf_object(tmp_path_factory, PROGRAMS_DIR / "never_loads.bpf.c"),
    }


@pytest.mark.kernel
@pytest.mark.parametrize("which", ["built", "group_dead"])
def test_doctor_fails_exactly_where_load_fails(cli, objects, which):
    """doctor loads the object for real: its verdict is load's, on every kernel.
    `group_dead` is procmon-ctl's object from before it ran on older kernels: only
    kernels since 6.16 pass that argument to sched_process_exit."""
    doctor_and_load_agree(cli, objects, which)


def test_doctor_fails_where_an_object_never_loads(cli, objects):
    """An object no kernel's verifier takes: doctor fails as load does.  On the host
    only: the verdict is the same on every kernel, and that doctor's trial load is
    load's is what the two cases above check on every kernel of the matrix."""
    doctor_and_load_agree(cli, objects, "never")


def doctor_and_load_agree(cli, objects, which: str) -> None:
    obj = objects[which]
    r, pid = doctor_and_its_pid("--object", str(obj), "--json")
    check = by_name(json.loads(r.stdout))["load and attach"]
    loaded = cli("load", "--object", str(obj), check=False)
    assert (check["status"] == "FAIL") == (loaded.returncode != 0), (check, loaded.stderr)
    assert check["status"] in ("PASS", "FAIL"), check
    if check["status"] == "FAIL":
        assert r.returncode == 4 and "load and attach" in json.loads(r.stdout)["failed"]
        verdict = loaded.stderr.strip().splitlines()[-1]
        assert check["detail"] in verdict, (check["detail"], verdict)
        assert not cli.pin_dir.exists(), "a failed load leaves nothing in bpffs"
    else:
        cli("unload")
    expected_to_load = {
        "built": True,
        "never": False,
        "group_dead": kernel_version() >= (6, 16),
    }[which]
    if which != "group_dead" or kernel_version() <= (6, 12) or kernel_version() >= (6, 18):
        assert (check["status"] == "PASS") == expected_to_load, check
    # doctor's own trial pin dir is gone too, and its lock files (only this doctor's:
    # other doctors on the machine may be trying theirs meanwhile).
    trial = PinnedInstance.at(BPFFS_ROOT / f"{TRIAL_PREFIX}{pid}")
    assert not trial.root.exists(), f"doctor left {trial.root}"
    assert not [lock for lock in trial.locks.paths() if lock.exists()]


@needs_root
def test_a_kernel_without_btf_is_named_in_one_line(cli):
    """Without kernel BTF (a kernel built without CONFIG_DEBUG_INFO_BTF: here its file
    is hidden in a private mount namespace) `load` names the missing feature in one
    line, exits 4 and leaves nothing; doctor fails the same way.  On the host only:
    the missing file is simulated, alike on every kernel."""
    r = in_private_mount_ns(
        "mount -t tmpfs none /sys/kernel/btf\n"
        f'PROCMON_PIN_DIR={cli.pin_dir} $CLI load || echo "load exited $?"\n'
        "$CLI doctor --json || true\n"
    )
    lines = r.stdout.splitlines()
    assert "load exited 4" in lines, r.stdout + r.stderr
    errors = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert errors[0] == (
        "procmon-ctl: error: this kernel lacks kernel BTF (/sys/kernel/btf/vmlinux, "
        "CONFIG_DEBUG_INFO_BTF) (Linux 5.5+), which procmon-ctl needs for its tp_btf "
        "programs and CO-RE: use Linux 5.8 or later with BTF (Debian 11+, Ubuntu 20.10+, "
        "RHEL 9+)"
    ), r.stderr
    assert errors[1].startswith("procmon-ctl: error: doctor: ") and len(errors) == 2, errors
    report = json.loads("\n".join(lines[lines.index("load exited 4") + 1 :]))
    assert {"kernel BTF", "kernel features", "load and attach"} <= set(report["failed"])
    assert "kernel BTF" in by_name(report)["kernel features"]["detail"]
    assert not cli.pin_dir.exists()
