"""What `stats`, `status` and `readers` print as JSON, as pydantic models: the
instance's counters, its programs, maps and links, and its readers.

Apart from the other models (views/schema.py, kernel/bpftool_json.py) so that `stats`
creates only these: a pydantic class costs a fraction of a millisecond to create even
when its validator is deferred, and `stats` is a quick command.  Each model defers
building its validator and serializer to its first use (`defer_build`).  No
`from __future__ import annotations`: pydantic would compile every field's annotation
string at class creation."""

from pydantic import BaseModel, ConfigDict, Field


class _Model(BaseModel):
    model_config = ConfigDict(defer_build=True)


class Stats(_Model):
    process_count: int = Field(description="new processes, as the seed's process_count map says")
    processes: int = Field(description="new processes, from the per-CPU counters")
    threads: int = Field(description="new threads (not processes)")
    execs: int
    exits: int = Field(description="processes that ended (last thread of the group)")
    produced: int = Field(description="records the programs tried to put in the ring buffer")
    dropped: int = Field(
        description="records lost: no room in the ring buffer (or, for a failed exec, its "
        "caller's registers not found)"
    )
    filtered: int = Field(
        description="records never produced because a reader's <<cgroup>> or <<container>> "
        "filter kept them out (the counts above include their events)"
    )


class ReaderStatus(_Model):
    """One reader of the instance (a reader slot), as `readers`, `status` and `stats`
    <<json>> show it."""

    slot: int = Field(description="its slot, 0 to 15: the index of its ring in `rings`")
    name: str | None = Field(
        description="a named reader's name (`events <<name>>`, or the file's name with "
        "<<output>>); null for a reader without a name, whose slot goes when it ends"
    )
    pid: int | None = Field(
        description="the process reading it now; null for a named reader that is down (its "
        "ring keeps filling, under its filters, until it comes back)"
    )
    threads: bool = Field(description="it asked for thread forks too (<<threads>>)")
    failed: bool = Field(description="it asked for failed execs too (<<failed>>)")
    cgroup_id: int | None = Field(
        description="its cgroup filter (<<cgroup>>, <<container>>): only that cgroup and "
        "below; null without one"
    )
    cgroup: str | None = Field(
        description="that cgroup's path below the cgroup2 mount; null without a filter, or "
        "when the cgroup is gone"
    )
    argv_bytes: int = Field(
        description="the most bytes of each command line it keeps (<<argv_bytes>>; 0: none)"
    )
    ring_size: int = Field(description="the size of its ring buffer, in bytes")
    waiting_bytes: int = Field(description="bytes in its ring not read yet")
    produced: int = Field(description="records the programs put, or tried to put, in its ring")
    delivered: int = Field(description="of those, the records its ring took (produced - dropped)")
    dropped: int = Field(
        description="records its full ring refused: lost, and marked in its stream"
    )
    filtered: int = Field(description="records its cgroup filter kept out of its ring")


class ProgramStatus(_Model):
    event: str
    pin: str
    id: int | None
    attached: bool
    link_id: int | None = None
    link_pin: str | None = None


class Status(_Model):
    pin_dir: str
    loaded: bool
    programs: list[ProgramStatus] = []  # a pydantic field: each model gets a copy
    maps: dict[str, int] = Field(default_factory=dict, description="map name -> map id")
    ring_size: int | None = Field(
        None, description="the size of each new reader's ring buffer (`load <<ring_size>>`)"
    )
    readers: list[ReaderStatus] = Field(
        default_factory=list, description="the readers of the instance, by slot"
    )
