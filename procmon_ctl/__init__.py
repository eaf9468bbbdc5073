"""procmon-ctl: watch process creation, exec and exit with eBPF.

The folders follow a record's path, and imports only go down it (tests/test_imports.py):
`kernel` (the kernel/user contract, libbpf, bpftool, the ring, host facts) →
`instance` (the pins, settings and locks of one loaded instance; the private one of
`run`) → `process` (records decoded, filtered and folded into process state) →
`stream` (reading the ring, its guarantees, where lines go) → `views` (every byte a
person or a log shipper reads) → `commands` (what each command does) → `cli` (flags,
hints, stdout and stderr).  `errors` is the vocabulary of every layer.  Imports stay
lazy so `procmon-ctl stats` starts fast.
"""

from pathlib import Path

__version__ = "0.1.0"

# What `make` builds into the package: the BPF object and the C formatter.
DATA_DIR = Path(__file__).parent / "data"
