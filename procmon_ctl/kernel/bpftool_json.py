"""bpftool's JSON (-j) as pydantic models: what `bpftool -j prog/map/link show` and
`map dump` say, only the fields procmon-ctl reads (the rest is ignored).

Every model defers building its validator to its first use (`defer_build`): a command
builds only the few it needs.  No `from __future__ import annotations`: pydantic would
compile every field's annotation string at class creation."""

from pydantic import BaseModel, ConfigDict, Field, RootModel

# Built on first use, not at class creation.
DEFERRED = ConfigDict(defer_build=True)


class Model(BaseModel):
    model_config = DEFERRED


class _Bpftool(Model):
    model_config = ConfigDict(extra="ignore")


class CpuValue(_Bpftool):
    cpu: int
    value: int


class FormattedEntry(_Bpftool):
    key: int
    value: int | dict | None = None
    values: list[CpuValue] | None = None


class MapEntry(_Bpftool):
    """One element of `bpftool -j map dump` on a map with BTF."""

    key: list[str]
    value: list[str] | None = None
    values: list[dict] | None = None
    formatted: FormattedEntry

    @property
    def total(self) -> int:
        """The value, summed over CPUs for a per-CPU map."""
        f = self.formatted
        if f.values is not None:
            return sum(v.value for v in f.values)
        if isinstance(f.value, int):
            return f.value
        raise ValueError(f"map element {f.key} is not a number: {f.value!r}")


# RootModel subclasses name their type as `root` rather than RootModel[...]: the
# parametrized class in between would build its validator at once.
class MapDump(RootModel):
    model_config = DEFERRED

    root: list[MapEntry]

    def by_key(self) -> dict[int, int]:
        return {e.formatted.key: e.total for e in self.root}


class ProgInfo(_Bpftool):
    id: int
    type: str
    name: str = ""
    tag: str = ""
    loaded_at: int | None = None
    map_ids: list[int] = []
    btf_id: int | None = None
    run_time_ns: int | None = None
    run_cnt: int | None = None
    recursion_misses: int | None = None


class MapInfo(_Bpftool):
    id: int
    type: str
    name: str = ""
    key: int | None = Field(None, alias="bytes_key")
    value: int | None = Field(None, alias="bytes_value")
    max_entries: int
    bytes_memlock: int | None = None


class LinkInfo(_Bpftool):
    id: int
    type: str
    prog_id: int
    tp_name: str | None = None
