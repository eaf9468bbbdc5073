"""The examples that end each command's help (and the group's), as git's and
kubectl's manuals end with theirs: what it does, then the command line as typed.
Each works as written, as root, on a machine where `make` ran."""

from __future__ import annotations

# Command (or "procmon-ctl" for the group) -> (what it does, the command line).
EXAMPLES: dict[str, tuple[tuple[str, str], ...]] = {
    "procmon-ctl": (
        ("follow a command and every process it starts", "procmon-ctl run -- make -j4"),
        ("watch the whole machine: load and attach once", "procmon-ctl load && procmon-ctl attach"),
        ("... then read, as often as you like", "procmon-ctl events --wide"),
        ("check what this machine lacks, if anything", "procmon-ctl doctor"),
    ),
    "load": (
        ("load, then start watching", "procmon-ctl load && procmon-ctl attach"),
        ("in a service's ExecStartPre: keep one already loaded", "procmon-ctl load --if-needed"),
        (
            "16 MiB rings, at most 1024 bytes of each command line",
            "procmon-ctl load --ring-size 16777216 --argv-bytes 1024",
        ),
    ),
    "attach": (
        ("watch forks, execs and exits", "procmon-ctl attach"),
        ("only execs and exits", "procmon-ctl attach --events exec,exit"),
    ),
    "detach": (
        ("stop watching; `attach` starts again", "procmon-ctl detach"),
        ("stop watching forks only", "procmon-ctl detach --events fork"),
    ),
    "unload": (
        ("remove the instance once its readers stopped", "procmon-ctl unload"),
        ("remove it even while readers read (they stop)", "procmon-ctl unload --force"),
        ("remove the instance of another pin dir", "procmon-ctl --pin-dir /sys/fs/bpf/t unload"),
    ),
    "stats": (
        ("the counters now", "procmon-ctl stats"),
        ("rates per second, every 5 seconds", "procmon-ctl stats --watch --interval 5"),
        ("one JSON object, with each reader's figures", "procmon-ctl stats --json"),
    ),
    "status": (
        ("what is loaded, attached and pinned", "procmon-ctl status"),
        ("with kernel ids, for `bpftool prog show id N`", "procmon-ctl status --json"),
    ),
    "readers": (
        ("who reads the instance, and how full each ring is", "procmon-ctl readers"),
        ("the same as a JSON array", "procmon-ctl readers --json"),
        ("forget the named reader journal (it must be down)", "procmon-ctl readers rm journal"),
    ),
    "events": (
        ("each new process with its command line", "procmon-ctl events"),
        (
            "each exec and exit, with exit codes, signals, lifetimes; at the end, counts by "
            "command and the failures",
            "procmon-ctl events --wide --summary",
        ),
        (
            "one container's, by its name; waits for it to start",
            "procmon-ctl events --wide --container web",
        ),
        (
            "JSON lines for a log shipper; resumes after a restart",
            "procmon-ctl events --output /var/log/procmon-events.jsonl",
        ),
    ),
    "run": (
        ("every process a build started, and which failed", "procmon-ctl run -- make -j4"),
        (
            "the build as the user who ran sudo, its process tree after the summary",
            'procmon-ctl run -u "$SUDO_USER" -q --tree -- make -j4',
        ),
        (
            "rows and the JSON summary in a file, nothing of run's on the terminal",
            "procmon-ctl run --json -o build.jsonl -- ./build.sh",
        ),
        ("the whole machine for 10 s, no load needed", "procmon-ctl run --duration 10"),
    ),
    "schema": (
        ("the schema of `events --json` lines", "procmon-ctl schema"),
        ("saved, for a validator", "procmon-ctl schema > procmon-events.schema.json"),
    ),
    "doctor": (
        ("what procmon-ctl needs, and what is missing", "procmon-ctl doctor"),
        ("mount bpffs and tracefs where they are missing", "procmon-ctl doctor --fix"),
        ("the report as JSON", "procmon-ctl doctor --json"),
    ),
    "serve": (
        ("the loaded instance at http://127.0.0.1:9464/metrics", "procmon-ctl serve"),
        ("an instance of its own, gone when serve ends", "procmon-ctl serve --attach"),
        ("for a remote Prometheus", "procmon-ctl serve --address 0.0.0.0 --port 9465"),
        ("count failed execs by errno too", "procmon-ctl serve --failed"),
    ),
    "lineage": (
        ("who started process 4242 (its whole chain of parents)", "procmon-ctl lineage 4242"),
        ("... from a log of your own", "procmon-ctl lineage 4242 --log /var/log/pm.jsonl"),
        ("... from a log on stdin (zcat old.jsonl.gz | ...)", "procmon-ctl lineage 4242 --log -"),
        ("as JSON", "procmon-ctl lineage 4242 --json"),
    ),
    "help": (
        ("the commands", "procmon-ctl help"),
        ("one command's options and examples", "procmon-ctl help events"),
    ),
}


def epilog(name: str) -> str:
    """The examples of `name` as a help's last section.  Click's \\b keeps the block's
    lines as they are: a command line is never rewrapped."""
    lines = ["\b", "Examples:"]
    for what, command in EXAMPLES[name]:
        lines += [f"  # {what}", f"  {command}"]
    return "\n".join(lines)
