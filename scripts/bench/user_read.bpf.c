// SPDX-License-Identifier: GPL-2.0-only
/* Probes for scripts/bench/user_read_cost.py: what reading a new image's argv
 * costs a program on sched_process_exec, apart from everything else the exec
 * program does (issue 28.3's floor).  Each probe is a program of its own on the
 * tracepoint; the script attaches them in the order they are to run (one pass
 * at a time) and takes each one's bpf_stats. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "process_monitor.h"

char LICENSE[] SEC("license") = "GPL";

/* Where the probes' reads go: one per CPU (the programs run with preemption off),
 * as handle_exec's go to its scratch space. */
struct probe_buffer {
	char bytes[ARGV_DEFAULT_BYTES];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct probe_buffer);
} buffer SEC(".maps");

/* 0, but unknown to the verifier and the compiler: a read of 0 bytes that is
 * still made. */
volatile const __u32 no_bytes = 0;

static __always_inline char *get_buffer(void)
{
	__u32 zero = 0;
	struct probe_buffer *b = bpf_map_lookup_elem(&buffer, &zero);

	return b ? b->bytes : NULL;
}

/* handle_exec's argv read: mm->arg_start..arg_end, at most load's default. */
static __always_inline void read_argv(struct task_struct *p)
{
	struct mm_struct *mm = p->mm;
	__u64 size = mm->arg_end - mm->arg_start;
	char *dst = get_buffer();

	if (!dst)
		return;
	if (size > ARGV_DEFAULT_BYTES)
		size = ARGV_DEFAULT_BYTES;
	bpf_probe_read_user(dst, size, (const void *)mm->arg_start);
}

/* The user-copy path with nothing to copy: no page touched, no byte moved. */
static __always_inline void read_no_bytes(struct task_struct *p)
{
	char *dst = get_buffer();

	if (dst)
		bpf_probe_read_user(dst, no_bytes & 1, (const void *)p->mm->arg_start);
}

/* A program's run and bpf_stats' clock around it, with nothing inside. */
SEC("tp_btf/sched_process_exec")
int BPF_PROG(empty, struct task_struct *p)
{
	return 0;
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(argv_first, struct task_struct *p)
{
	read_argv(p);
	return 0;
}

/* The same read as argv_first, run right after it. */
SEC("tp_btf/sched_process_exec")
int BPF_PROG(argv_again, struct task_struct *p)
{
	read_argv(p);
	return 0;
}

/* As many bytes as argv has, from kernel memory: the same copy by the same kind
 * of helper, without user memory. */
SEC("tp_btf/sched_process_exec")
int BPF_PROG(kernel_same_size, struct task_struct *p)
{
	struct mm_struct *mm = p->mm;
	__u64 size = mm->arg_end - mm->arg_start;
	char *dst = get_buffer();

	if (!dst)
		return 0;
	if (size > sizeof(struct task_struct))
		size = sizeof(struct task_struct);
	if (size > ARGV_DEFAULT_BYTES)
		size = ARGV_DEFAULT_BYTES;
	bpf_probe_read_kernel(dst, size, p);
	return 0;
}

/* read_no_bytes() as the exec's first user read. */
SEC("tp_btf/sched_process_exec")
int BPF_PROG(zero_first, struct task_struct *p)
{
	read_no_bytes(p);
	return 0;
}

/* argv_first's read, after zero_first. */
SEC("tp_btf/sched_process_exec")
int BPF_PROG(argv_after_zero, struct task_struct *p)
{
	read_argv(p);
	return 0;
}

/* A read of 0 bytes from kernel memory: the helpers' common path (the program's
 * call, the helper's checks) made warm before zero_first runs. */
SEC("tp_btf/sched_process_exec")
int BPF_PROG(kernel_zero_first, struct task_struct *p)
{
	char *dst = get_buffer();

	if (dst)
		bpf_probe_read_kernel(dst, no_bytes & 1, p);
	return 0;
}

/* The loads a user read needs, its address and length, without the read: made
 * before zero_first runs. */
SEC("tp_btf/sched_process_exec")
int BPF_PROG(arg_loads, struct task_struct *p)
{
	__u64 *dst = (__u64 *)get_buffer();

	if (dst) {
		dst[0] = p->mm->arg_start;
		dst[1] = p->mm->arg_end;
	}
	return 0;
}

/* argv[0] by the user string reader, the other user-copy path
 * (strncpy_from_user_nofault, not copy_from_user_nofault). */
#define STRING_READ_BYTES 64

static __always_inline void read_first_arg(struct task_struct *p)
{
	char *dst = get_buffer();

	if (dst)
		bpf_probe_read_user_str(dst, STRING_READ_BYTES, (const void *)p->mm->arg_start);
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(string_first, struct task_struct *p)
{
	read_first_arg(p);
	return 0;
}

/* The same string read, right after it. */
SEC("tp_btf/sched_process_exec")
int BPF_PROG(string_again, struct task_struct *p)
{
	read_first_arg(p);
	return 0;
}

/* A read of 0 bytes from user memory earlier in the same exec: task_rename fires
 * as the exec names the task (__set_task_comm), in the new image's memory, before
 * the ELF loader runs and sched_process_exec fires. */
SEC("tp_btf/task_rename")
int BPF_PROG(zero_at_rename, struct task_struct *p)
{
	read_no_bytes(p);
	return 0;
}
