"""What the kernel and the host give: the kernel/user contract (abi, the mirror of
bpf/process_monitor.h), libbpf and bpftool calls, the mapped ring buffer, atomics, the
mounts and features of this host, and stop signals.  Knows nothing of instances,
records' meaning or text."""
