"""What procmon-ctl prints as JSON, as pydantic models: `events --json` lines (whose
JSON Schema `procmon-ctl schema` prints), `run --json` and `doctor --json`.  Those of
`stats`, `status` and `readers` are in stats_schema.py, so that those quick commands
create no model but their own.

Descriptions and titles, which the schema shows, name options as <<setting>>: the CLI
spells them (views.words.worded_schema).

Every model defers building its validator and serializer to its first use
(`defer_build`): a command builds only the few it needs, not all of them at import.
No `from __future__ import annotations`: pydantic would compile every field's
annotation string at class creation, which costs more than evaluating them here."""

from typing import Annotated, Literal

from pydantic import ConfigDict, Field, RootModel

from ..kernel.bpftool_json import Model as _Model

# One `events --json` line: one model per line type, told apart by `type`.  Exact
# (strict types, no unknown field, the integer ranges of bpf/process_monitor.h), so
# `procmon-ctl schema` rejects whatever the writers of those lines (Python and C)
# never write.  A field that does not apply to a type is absent, never null.
U32_MAX = 2**32 - 1
U64_MAX = 2**64 - 1
S32_MIN, S32_MAX = -(2**31), 2**31 - 1
U32 = Annotated[int, Field(ge=0, le=U32_MAX)]
U64 = Annotated[int, Field(ge=0, le=U64_MAX)]
S32 = Annotated[int, Field(ge=S32_MIN, le=S32_MAX)]


def _no_null_defaults(schema: dict) -> None:
    """A field that may be absent is never null: the schema says no default."""
    for prop in schema.get("properties", {}).values():
        if prop.get("default", ...) is None:
            del prop["default"]


class _Line(_Model):
    model_config = ConfigDict(strict=True, extra="forbid", json_schema_extra=_no_null_defaults)


class Ancestor(_Line):
    """One process of a lineage (`events <<lineage>>`)."""

    pid: U32 = Field(description="its process id")
    comm: str = Field(description="its name (as text, like comm)")
    argv: list[str] = Field(
        description="its command line (from its exec record, or /proc when it started before "
        "the reader; [] for kernel threads)"
    )
    exited: Literal[True] = Field(
        None, description="true when it has exited (its children were reparented); else absent"
    )
    cut: Literal[True] = Field(
        None,
        description="true on the last ancestor shown when the lineage was longer than 64 "
        "(a chain that deep is made on purpose); else absent",
    )


# "time" as the writers write it: RFC 3339, UTC, always six digits of microseconds.
RFC3339_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z$"


def _time_field(description: str):
    return Field(
        description=description,
        pattern=RFC3339_PATTERN,
        json_schema_extra={"format": "date-time"},
    )


class _ProcessLine(_Line):
    """The fields every process event has (struct process_event)."""

    type: str = Field(description="what happened: fork, exec or exit")
    time: str = _time_field(
        "wall-clock time of the event, RFC 3339 in UTC with microseconds "
        "(2026-11-29T22:15:01.123456Z): ts_ns plus CLOCK_REALTIME - CLOCK_MONOTONIC as "
        "the reader took it for the batch the record came in"
    )
    ts_ns: U64 = Field(description="CLOCK_MONOTONIC time of the event, in ns")
    pid: U32 = Field(description="the task's own id (a thread id for thread forks)")
    tgid: U32 = Field(description="the process id (thread group id)")
    ppid: U32 = Field(description="the parent process (real_parent->tgid)")
    uid: U32 = Field(
        description="the real user id (as the host numbers users, like every id here); at "
        "fork the child's, a copy of its parent's; at exec, after it"
    )
    euid: U32 = Field(
        description="the effective user id, what permission checks use: differs from uid "
        "after a set-user-ID program (or seteuid())"
    )
    egid: U32 = Field(description="the effective group id")
    loginuid: U32 = Field(
        None,
        description="audit's login uid (/proc/PID/loginuid, auditd's auid): the user who "
        "logged in, set once at login (pam_loginuid) and kept across sudo, su and set-user-ID "
        "programs; absent when never set (no PAM login: boot services, containers) or on a "
        "kernel built without CONFIG_AUDIT",
    )
    sessionid: U32 = Field(
        None,
        description="audit's login session id (/proc/PID/sessionid, auditd's ses), set with "
        "loginuid; absent when unset, like it",
    )
    comm: str = Field(
        description="command name; at fork, still the parent's; as text like every name and "
        "argument: valid UTF-8 as it is, a byte that is not UTF-8 as the four characters "
        "\\xNN (lowercase hex), a backslash as two (\\\\), so it maps back to the exact bytes"
    )
    thread: bool = Field(description="true for a new thread rather than a process (fork only)")
    cgroup_id: U64 = Field(
        description="the process's cgroup in the cgroup v2 hierarchy: its kernel id (the "
        "inode number of its directory on the cgroup2 mount), read in the kernel"
    )
    # Absent rather than null when unknown, as every field that does not apply.
    cgroup: str = Field(
        None,
        description="that cgroup's path below the cgroup2 mount, as /proc/PID/cgroup's 0:: "
        "line shows it; absent when the cgroup was removed before the reader saw it "
        "(cgroup_id still says which it was)",
    )
    container_id: str = Field(
        None,
        description="the container the process runs in, from its cgroup path (docker, "
        "containerd, CRI-O, podman: the 64-hex id; systemd-nspawn: the machine name); "
        "absent outside containers",
    )
    container_runtime: str = Field(
        None,
        description="which runtime's cgroup layout named it: docker, containerd, cri-o, "
        "podman, systemd-nspawn, libvirt-lxc, or cri (a Kubernetes container whose path "
        "does not say which runtime); absent outside containers",
    )
    container_name: str = Field(
        None,
        description="that container's name as its runtime has it (podman and CRI-O: "
        "containers/storage's containers.json; docker: config.v2.json; containerd: the "
        "task's OCI annotations, POD/CONTAINER for Kubernetes); absent when none says",
    )
    container_image: str = Field(
        None, description="the image the container was made from, where its runtime says"
    )
    pod_uid: str = Field(
        None, description="the Kubernetes pod, when the cgroup path names one (else absent)"
    )
    ns_pid: U32 = Field(
        None,
        description="the process id (tgid) in the process's own PID namespace; present only "
        "when that is not the host's (a container, unshare --pid)",
    )
    ns_ppid: U32 = Field(
        None,
        description="its parent's id in that namespace, 0 when the parent is outside it (as "
        "for a container's init); present with ns_pid",
    )


# Last in every process line, after the type's own fields (the writers append it).
Lineage = Annotated[
    list[Ancestor],
    Field(
        description="with `events <<lineage>>` only: who started the process, parent first, up "
        "to init (pid 1) or the topmost process known"
    ),
]


class ForkEvent(_ProcessLine):
    """A new process (or, with `events <<threads>>`, a new thread)."""

    model_config = ConfigDict(title="fork")

    type: Literal["fork"]
    lineage: Lineage = None


class ExecEvent(_ProcessLine):
    """The process ran a program."""

    model_config = ConfigDict(title="exec")

    type: Literal["exec"]
    filename: str = Field(description="the file executed (as text, like comm)")
    argv: list[str] = Field(
        description="the program's arguments, argv[0] first, as the kernel holds them when "
        "it starts (each as text, like comm: a backslash as \\\\, a byte that is not UTF-8 "
        "as \\xNN); an empty argument is kept, as an empty string; at most the load's "
        "<<argv_bytes>> (default 4096) of the argument area, see argv_truncated; [] with "
        "<<argv_bytes>> 0"
    )
    argv_truncated: bool = Field(
        description="true when argv is not the whole command line: its last element is the "
        "cut start of an argument, or arguments after it are missing (there were more bytes "
        "than <<argv_bytes>>, or they could not be read)"
    )
    argc: U32 = Field(
        description="how many arguments the program was given; argv holds that many unless "
        "argv_truncated"
    )
    setid: Literal[True] = Field(
        None,
        description="true when the exec changed the effective uid or gid (a set-user-ID or "
        "set-group-ID program: euid and egid are those after it, prev_euid and prev_egid "
        "those before); else absent",
    )
    prev_euid: U32 = Field(
        None, description="with setid: the effective uid before the exec; else absent"
    )
    prev_egid: U32 = Field(
        None, description="with setid: the effective gid before the exec; else absent"
    )
    cap_gained: U64 = Field(
        None,
        description="the capabilities the exec added to the process's permitted set, as "
        "a bit mask of CAP_* numbers (/proc/PID/status's CapPrm as an integer): a program "
        "with file capabilities, or a set-user-ID-root program run by another user; absent "
        "when it gained none",
    )
    lineage: Lineage = None


class ExitEvent(_ProcessLine):
    """The process ended (its last thread exited)."""

    model_config = ConfigDict(title="exit")

    type: Literal["exit"]
    exit_code: S32 = Field(description="the exit status, as wait() gives it (0 if killed)")
    exit_signal: U32 = Field(description="the signal that ended it, 0 if none")
    duration_ns: U64 = Field(description="how long the process lived, in ns")
    # What the process cost: read in the kernel as its last thread exits, for the
    # whole process (its threads that ended before included), in the units of
    # getrusage() (the process's own part: wait4() adds the children it waited for).
    cpu_user_ns: U64 = Field(
        description="CPU time in user mode, in ns, as wait4()'s ru_utime gives it (the "
        "kernel's exact run time split in the ratio of its sampled user and system time); "
        "the exiting thread's time since its last scheduler tick (at most 1/HZ) is not in it"
    )
    cpu_system_ns: U64 = Field(description="CPU time in kernel mode, in ns (ru_stime), likewise")
    max_rss_kib: U64 = Field(
        description="peak resident memory, in KiB (1024 bytes), of every program the process "
        "ran: ru_maxrss, `time -v`'s Maximum resident set size"
    )
    minor_faults: U64 = Field(description="page faults served without I/O (ru_minflt)")
    major_faults: U64 = Field(description="page faults that needed I/O (ru_majflt)")
    voluntary_switches: U64 = Field(description="context switches because it waited (ru_nvcsw)")
    involuntary_switches: U64 = Field(
        description="context switches because it was preempted (ru_nivcsw)"
    )
    read_bytes: U64 = Field(
        None,
        description="bytes it had read from storage, in bytes (/proc/PID/io read_bytes; "
        "ru_inblock * 512): reads served from the page cache are not in it; absent where the "
        "kernel does not account it (built without CONFIG_TASK_IO_ACCOUNTING)",
    )
    write_bytes: U64 = Field(
        None,
        description="bytes it caused to be written to storage, in bytes, counted as it dirtied "
        "page cache pages (/proc/PID/io write_bytes; ru_oublock * 512); absent with read_bytes",
    )
    # What it ran: kept by the reader per pid (at most 32768 processes and 64 MiB).
    filename: str = Field(
        None,
        description="the file of the last exec the reader saw it (or, not having exec'd, the "
        "parent it forked from) make, as in exec lines; absent when that exec was not seen "
        "(the process ran before the reader started, or the reader's table of processes was "
        "full)",
    )
    argv: list[str] = Field(
        None,
        description="the command line of that exec, as in exec lines; for a process that ran "
        "before the reader started, its /proc/PID/cmdline (then without filename); absent "
        "when unknown (also for a named reader that resumed: its backlog's pids may be "
        "others' now)",
    )
    argv_truncated: bool = Field(None, description="argv is cut short; present with argv")
    lineage: Lineage = None


class ExecFailedEvent(_ProcessLine):
    """An execve or execveat that failed (`events <<failed>>` only): the process runs
    on as it was.  comm and pid are the caller's."""

    model_config = ConfigDict(title="exec_failed")

    type: Literal["exec_failed"]
    filename: str = Field(description="the path the caller tried to execute, as it gave it")
    argv: list[str] = Field(description="the arguments it gave, argv[0] first")
    argv_truncated: bool = Field(
        description="argv was cut: its last argument, or the arguments after it, are missing"
    )
    argc: U32 = Field(description="how many arguments were read (at most 256)")
    errno: Annotated[int, Field(ge=1, le=4095)] = Field(
        description="the error the syscall returned, as a positive errno"
    )
    error: Annotated[str, Field(pattern=r"^E[A-Z0-9]+$")] = Field(
        description="its name (ENOENT, EACCES, ENOEXEC, ...)"
    )
    lineage: Lineage = None


class GapEvent(_Line):
    """Records were lost (no room in the ring buffer, or, for a failed exec, its
    caller's registers not found), since the previous gap
    line (or since the stream began): before the next line, or, when the reader had
    read everything, after the line before.  Every loss is marked exactly once: the
    gap lines of a sequence of readers add up to `stats`'s `dropped`."""

    model_config = ConfigDict(title="gap")

    type: Literal["gap"]
    time: str = _time_field(
        "when the reader wrote the line (it found the loss then), RFC 3339 in UTC with "
        "microseconds; the lost records were made before it"
    )
    dropped: Annotated[int, Field(ge=1, le=U64_MAX)] = Field(
        description="how many records were lost"
    )


class EventLine(RootModel):
    """One line of `procmon-ctl events <<json>>`."""

    model_config = ConfigDict(
        title="procmon-ctl events <<json>> line",
        defer_build=True,
        json_schema_extra={"$schema": "https://json-schema.org/draft/2020-12/schema"},
    )

    root: Annotated[
        ForkEvent | ExecEvent | ExitEvent | ExecFailedEvent | GapEvent,
        Field(discriminator="type"),
    ]


class RunExit(_Model):
    pid: int
    comm: str
    exit_code: int | None
    signal: int | None
    argv: list[str] | None = Field(
        None,
        description="the command line of the program it last ran (as in exec lines); a "
        "process that exec'd nothing has its parent's; null when neither was seen",
    )
    argv_truncated: bool = Field(False, description="argv is cut short (as in exec lines)")


class RunLifetime(_Model):
    pid: int
    comm: str
    duration_ns: int | None


class RunProcess(_Model):
    pid: int
    comm: str


class RunNode(_Model):
    """One process of CMD's tree, with the processes it started."""

    pid: int = Field(description="the process id")
    ppid: int | None = Field(
        description="its parent as its fork record gives it (for CMD: run); null when that "
        "record was not seen"
    )
    comm: str = Field(description="the name of the program it last exec'd (as in exec lines)")
    argv: list[str] | None = Field(
        description="the command line of the program it last exec'd (as in exec lines); "
        "null when not seen"
    )
    argv_truncated: bool = Field(description="argv is cut short (as in exec lines)")
    inherited: bool = Field(
        description="it exec'd nothing: comm and argv are the program its parent ran when it "
        "forked (as ps shows such a process)"
    )
    started_ns: int | None = Field(
        description="when it was forked, CLOCK_MONOTONIC ns (as ts_ns in lines); null when not seen"
    )
    duration_ns: int | None = Field(description="how long it lived, in ns; null while running")
    exit_code: int | None = Field(
        description="its exit status (0 when a signal ended it); null while running"
    )
    signal: int | None = Field(
        description="the signal that ended it, 0 if none; null while running"
    )
    running: bool = Field(description="it had not exited when CMD ended")
    cpu_user_ns: int | None = Field(
        None,
        description="CPU time it spent in user mode, ns, from its exit record; null while running",
    )
    cpu_system_ns: int | None = Field(
        None, description="CPU time it spent in the kernel, ns; null while running"
    )
    max_rss_kib: int | None = Field(
        None, description="its peak resident memory, KiB (ru_maxrss); null while running"
    )
    threads: int | None = Field(
        description="threads it started; counted with <<threads>> only (null without)"
    )
    parent_unseen: bool = Field(
        description="its parent is not in the tree (records were lost): it is put under CMD"
    )
    children: list["RunNode"] = Field(
        description="the processes it forked, in the order they started"
    )


class RunCostly(_Model):
    """A process of CMD's tree that exited, with what it cost."""

    pid: int
    comm: str = Field(description="the name of the program it last exec'd")
    cpu_ns: int = Field(description="CPU time, user and system, ns")
    max_rss_kib: int = Field(
        description="its peak resident memory, KiB, as wait4() reports it (ru_maxrss: which "
        "counts the image it was forked from until its first exec; for CMD, run's own)"
    )
    after_ns: int = Field(description="when it was forked, ns after run started CMD")
    duration_ns: int = Field(description="how long it lived, ns")


class RunCost(_Model):
    """What CMD's tree cost, from the exit records of its processes (the kernel's own
    accounting, read as each process's last thread exits)."""

    cpu_user_ns: int = Field(
        0, description="CPU time in user mode of the processes that exited, ns"
    )
    cpu_system_ns: int = Field(0, description="... and in the kernel, ns")
    measured: int = Field(0, description="processes whose exit record said what they cost")
    top_cpu: list[RunCostly] = Field([], description="the 5 that took the most CPU, most first")
    top_memory: list[RunCostly] = Field(
        [],
        description="the 5 with the highest peak memory, highest first: the first is the "
        "tree's peak, and its after_ns and duration_ns say when it ran",
    )
    waited_cpu_user_ns: int | None = Field(
        None,
        description="CMD's user CPU as wait4() reports it: CMD's own and that of the "
        "descendants it, and they, waited for (the kernel's own total; processes still "
        "running or reparented and not waited for are not in it); null when run did not "
        "wait for CMD",
    )
    waited_cpu_system_ns: int | None = Field(None, description="... and its system CPU")
    waited_max_rss_kib: int | None = Field(
        None, description="the largest peak memory among those, as wait4() reports it"
    )


class RunSummary(_Model):
    """What `procmon-ctl run -- CMD` saw of CMD's process tree."""

    command: list[str] = Field(description="CMD's command line, as given to run")
    exit_code: int = Field(
        description="CMD's status as a shell reports it (128+N: signal N); 130 when run "
        "stopped waiting at a second SIGINT (cmd_running)"
    )
    cmd_running: bool = Field(
        False,
        description="CMD still ran when run stopped waiting for it (a second SIGINT, "
        "Ctrl-C twice): exit_code is run's own, and CMD is among `running`",
    )
    processes: int = Field(description="processes started in the tree, CMD included")
    threads: int = Field(description="threads started in the tree")
    by_name: dict[str, int] = Field(description="processes by the name they ran as")
    failures: int = Field(description="processes that exited non-zero or by a signal")
    failed: list[RunExit] = Field(description="the first 20 of those, with their command lines")
    longest: list[RunLifetime] = Field(description="the longest-lived processes, longest first")
    running: list[RunProcess] = Field(
        description="processes of the tree still running when CMD ended (not waited for)"
    )
    lost_records: int = Field(
        description="records of the tree lost because the ring buffer was full: "
        "when not 0, the figures above are incomplete"
    )
    unfollowed: int = Field(
        description="processes of the tree not followed because too many ran at once "
        "(their execs, exits and children are missing): when not 0, the figures are incomplete"
    )
    wall_ns: int = Field(description="from CMD's start to its end")
    cost: RunCost = Field(
        default_factory=RunCost, description="what the tree cost: CPU and peak memory"
    )
    tree: RunNode | None = Field(
        None,
        description="CMD's process tree, CMD at its root (always there in run <<json>>)",
    )
    tree_left_out: int = Field(
        0,
        description="processes of the tree left out of `tree`, which keeps the first 10,000 "
        "in start order, down to 200 levels (a process left out, its descendants with it)",
    )


class EventsCommand(_Model):
    """The records of one command (a process name, as comm in lines)."""

    comm: str
    forks: int = Field(description="processes it forked (thread starts not counted)")
    execs: int = Field(description="execs that made a process this program")
    exits: int = Field(description="processes that exited under this name")


class EventsEnded(_Model):
    pid: int
    comm: str
    duration_ns: int = Field(description="how long it lived, in ns")
    exit_code: int = Field(description="its exit status (0 when a signal ended it)")
    signal: int = Field(description="the signal that ended it, 0 if none")
    argv: list[str] | None = Field(
        description="the command line of the program it last ran (its parent's if it "
        "exec'd nothing); null when the reader saw neither"
    )
    argv_truncated: bool = Field(description="argv is cut short (as in exec lines)")


class EventsFailedExec(_Model):
    pid: int
    comm: str
    filename: str = Field(description="the path it tried to execute")
    errno: int = Field(description="the error, as a positive errno")


class EventsSummary(_Model):
    """`procmon-ctl events <<summary>>`: what the reader saw, from its records."""

    duration_ns: int = Field(description="how long the reader read, in ns")
    forks: int = Field(description="processes started (thread starts not counted)")
    execs: int = Field(description="programs executed")
    exits: int = Field(description="processes that exited")
    by_command: list[EventsCommand] = Field(
        description="the counts by command, the busiest first (the first 1000 names met)"
    )
    failures: int = Field(description="processes that exited non-zero or by a signal")
    failed: list[EventsEnded] = Field(description="the first 20 of those")
    failed_execs: int | None = Field(description="execs that failed; null without <<failed>>")
    failed_exec_list: list[EventsFailedExec] = Field(description="the first 20 of those")
    shortest: list[EventsEnded] = Field(description="the 5 shortest-lived, shortest first")
    longest: list[EventsEnded] = Field(description="the 5 longest-lived, longest first")
    lost_records: int = Field(
        description="records lost while reading (the ring was full): when not 0, the "
        "figures above are incomplete"
    )


class DoctorCheck(_Model):
    """One line of `procmon-ctl doctor`."""

    name: str
    status: Literal["PASS", "WARN", "FAIL", "INFO"] = Field(
        description="FAIL: procmon-ctl cannot work until fixed; WARN: it copes; INFO: a fact"
    )
    detail: str
    fix: str | None = Field(None, description="what to do about a FAIL or WARN")


class DoctorReport(_Model):
    """`procmon-ctl doctor <<json>>`."""

    ok: bool = Field(description="no check failed")
    failed: list[str] = Field(description="names of the checks that failed")
    checks: list[DoctorCheck]
