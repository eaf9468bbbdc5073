"""procmon-ctl: watch process creation, exec and exit with eBPF.

The workflow is in the module names: `load` (bpftool prog loadall), `attach`
(links pinned through libbpf) and detach, `ringbuf` (read the pinned ring
buffer), `decode` (bytes to events), `stats` (counters).  `app.Monitor` ties
them together for the CLI.  Imports stay lazy so `procmon-ctl stats` starts fast.
"""

__version__ = "0.1.0"
