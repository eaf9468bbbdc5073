"""procmon-ctl: watch process creation, exec and exit with eBPF.

The workflow is in the module names: `load` (bpftool prog loadall), `attach`
(links pinned through libbpf) and detach, `ringbuf` (read the pinned ring
buffer), `decode` (records to events), `rows` and `render` (events to the
table), `stream` (the reading loops), `stats` (counters).  `abi` mirrors
bpf/process_monitor.h; `cli` is the command line.  Imports stay lazy so
`procmon-ctl stats` starts fast.
"""

__version__ = "0.1.0"
