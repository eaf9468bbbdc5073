"""The user-space filters (--comm, --pid, --ppid, --uid, --tree), each given any
number of times, against a reference written here from what the help promises:
a record is shown when, for every filter given, one of its values matches (--tree:
the process is a root or descends from one, counting the children forked since).
Records are packed from abi.py's layouts and go through the real --json stream
loop; the flags go through the CLI's own checks (StreamFlags)."""

from __future__ import annotations

import json
import pwd

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from test_rows import T0, exec_, exit_, follow, fork

from procmon_ctl.cli.stream_flags import StreamFlags
from procmon_ctl.errors import UsageError
from procmon_ctl.process.rows import Filters

FIRST = 2000  # the first process the records make; 1000 and 1001 run before them
NAMES = ("sh", "ls", "cat", "make")
UIDS = (0, 1000, 65534)


@st.composite
def histories(draw):
    """Processes started by earlier ones (or by 1000/1001), each may exec and exit:
    (the records in order, each one's (tgid, ppid, uid, comm) as the record has it)."""
    n = draw(st.integers(1, 12))
    records, facts, alive = [], [], [1000, 1001]
    ts = T0
    for i in range(n):
        tgid, parent = FIRST + i, draw(st.sampled_from(alive))
        uid, comm = draw(st.sampled_from(UIDS)), draw(st.sampled_from(NAMES))
        ts += 10
        records.append(fork(tgid, parent, ts, comm=b"sh"))
        facts.append(("fork", tgid, parent, 0, "sh"))
        records[-1] = _with_uid(records[-1], 0)
        alive.append(tgid)
        if draw(st.booleans()):
            ts += 10
            records.append(_with_uid(exec_(tgid, parent, ts, comm=comm.encode()), uid))
            facts.append(("exec", tgid, parent, uid, comm))
        if draw(st.booleans()):
            ts += 10
            last = facts[-1]
            records.append(_with_uid(exit_(tgid, parent, ts, comm=last[4].encode()), last[3]))
            facts.append(("exit", tgid, parent, last[3], last[4]))
    return records, facts


def _with_uid(record: bytes, uid: int) -> bytes:
    from procmon_ctl.kernel.abi import ProcessEvent

    offset = ProcessEvent.uid.offset
    return record[:offset] + uid.to_bytes(4, "little") + record[offset + 4 :]


def reference(facts, comm, pid, ppid, uid, roots) -> list[tuple[str, int]]:
    tree = set(roots)
    shown = []
    for kind, tgid, parent, u, name in facts:
        if kind == "fork" and parent in tree:
            tree.add(tgid)
        if (
            (not comm or name in comm)
            and (not pid or tgid in pid)
            and (not ppid or parent in ppid)
            and (not uid or u in uid)
            and (not roots or tgid in tree)
        ):
            shown.append((kind, tgid))
        if kind == "exit":
            tree.discard(tgid)
    return shown


some = st.frozensets
PIDS = st.integers(FIRST, FIRST + 12)


@settings(max_examples=300, deadline=None)
@given(
    history=histories(),
    comm=some(st.sampled_from(NAMES), max_size=3),
    pid=some(PIDS, max_size=3),
    ppid=some(st.one_of(st.sampled_from((1000, 1001)), PIDS), max_size=3),
    uid=some(st.sampled_from(UIDS), max_size=2),
    roots=some(st.sampled_from((1000, 1001)), max_size=2),
)
def test_filters_match_the_reference(monkeypatch_session, history, comm, pid, ppid, uid, roots):
    records, facts = history
    # With no filter, --json writes records straight from the ring (JsonView), which
    # the fake ring here cannot give: test_json_native covers it.
    assume(comm or pid or ppid or uid or roots)
    filters = Filters(
        comm=comm or None,
        pid=pid or None,
        ppid=ppid or None,
        uid=uid or None,
        tree=set(roots) if roots else None,
        tree_since_ns=T0 - 1,
    )
    lines = follow(records, "json", filters, monkeypatch_session)
    got = [(json.loads(ln)["type"], json.loads(ln)["tgid"]) for ln in lines]
    assert got == reference(facts, comm, pid, ppid, uid, roots)


@pytest.fixture(scope="module")
def monkeypatch_session():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def test_a_filter_given_again_adds_values():
    """What the CLI makes of repeated flags: one set per filter, names for --uid."""
    nobody = pwd.getpwnam("nobody").pw_uid
    stream = StreamFlags(
        comm=["ls", "cat"], pid=[7, 8], ppid=[1], uid=["root", str(nobody), 1000], json_out=True
    ).stream()
    filters = stream.view.filters
    assert filters.comm == {"ls", "cat"} and filters.pid == {7, 8} and filters.ppid == {1}
    assert filters.uid == {0, nobody, 1000}
    # A slash inside a name is no path: kernel threads are named so.
    assert StreamFlags(comm=["kworker/u8:2"], json_out=True).stream().view.filters.comm == {
        "kworker/u8:2"
    }


@pytest.mark.parametrize(
    "flags, text",
    [
        (
            dict(comm=["/bin/ls"]),
            "comm /bin/ls is a path: a process's name is its file's "
            "base name, as the kernel keeps it (use ls)",
        ),
        (dict(uid=["no-such-user-here"]), "uid no-such-user-here: no user of that name"),
        (dict(cgroup=["/a", "/b"]), "cgroup is given more than once"),
        (dict(container=["a", "b"]), "container is given more than once"),
    ],
)
def test_filters_that_would_mislead_are_refused(flags, text):
    with pytest.raises(UsageError) as refused:
        StreamFlags(**flags).stream()
    assert text in str(refused.value)
