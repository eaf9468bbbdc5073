/* The kernel/user contract: every record procmon-ctl's BPF programs put in the
 * ring buffer, and every map key and value user space reads or writes.
 * procmon_ctl/abi.py is its one Python mirror; tests/test_abi.py checks every
 * layout and enum there against the compiled object's BTF, and the C formatter
 * (native/json_lines.c) reports the view it was built with, so a change here
 * that the Python side missed fails a test instead of misreading records. */
#ifndef PROCESS_MONITOR_H
#define PROCESS_MONITOR_H

#define TASK_COMM_LEN 16
#define MAX_FILENAME_LEN 256

enum event_type {
	EVENT_FORK = 1,
	EVENT_EXEC = 2,
	EVENT_EXIT = 3,
};

/* Bits of process_event.flags. */
enum event_flag {
	EVENT_FLAG_THREAD = 1, /* the new task is a thread, not a process */
};

/* Fork and exit records are a bare process_event; exec records are an
 * exec_event, so a thread storm does not pay ring space for a filename. */
struct process_event {
	__u64 ts_ns;          /* bpf_ktime_get_ns(): CLOCK_MONOTONIC */
	__u64 duration_ns;    /* exit: lifetime since the process started */
	/* losses[LOSS_DROPPED] as this record was made: every record the ring refused
	 * so far, on any CPU.  A reader marks the difference to what it already marked. */
	__u64 dropped_total;
	__u32 type;           /* enum event_type */
	__u32 pid;            /* the task's own id (thread id for threads) */
	__u32 tgid;           /* its process id */
	__u32 ppid;           /* parent process: real_parent->tgid */
	__u32 uid;
	__s32 exit_code;      /* exit: the code passed to exit(), else 0 */
	__u32 exit_signal;    /* exit: the signal that killed it, else 0 */
	__u32 flags;          /* EVENT_FLAG_* */
	char comm[TASK_COMM_LEN];
};

struct exec_event {
	struct process_event base;
	char filename[MAX_FILENAME_LEN];
};

/* Keys of the per-CPU `counters` map. */
enum counter_key {
	COUNTER_PROCESSES = 0, /* new processes (fork of a thread-group leader) */
	COUNTER_THREADS = 1,   /* new threads (clone with CLONE_THREAD) */
	COUNTER_EXECS = 2,
	COUNTER_EXITS = 3,     /* processes that ended (last thread of the group) */
	COUNTER_PRODUCED = 4,  /* records the programs tried to put in the ring */
	COUNTER_DROPPED = 5,   /* ... of which bpf_ringbuf_reserve refused */
	COUNTER_UNFOLLOWED = 6, /* follow mode: children of the tree `followed` had no room for */
	COUNTER_MAX = 7,
};

/* Keys of the `losses` map, so that every lost record is marked in the stream
 * exactly once, by whichever reader gets there: the programs count every refused
 * reservation in LOSS_DROPPED (one counter for all CPUs, so each record can carry
 * it), and the readers keep in LOSS_MARKED how many of those their gap markers
 * have reported.  A reader marks dropped_total - marked before a record, and
 * LOSS_DROPPED - marked whenever it has caught up, so a loss after the last
 * record is marked too. */
enum loss_key {
	LOSS_DROPPED = 0, /* written by the programs only */
	LOSS_MARKED = 1,  /* written by the reader only */
	LOSS_MAX = 2,
};

/* Follow mode (`run -- CMD`): the processes of CMD's tree, keyed by tgid.  User
 * space puts CMD in before it may fork or exec; the fork program adds every child
 * of a member, the exit program removes a member as it ends (so a reused pid is
 * never taken for one).  A tree wider than this at any moment is counted in
 * COUNTER_UNFOLLOWED, never silently cut. */
enum follow_limits {
	FOLLOWED_MAX_PROCESSES = 32768,
};

/* The one value of the `settings` map, written by `procmon-ctl` after load and by
 * the reader.  All zero (a fresh load) means: no thread records, wake the reader
 * per record, every process on the host. */
struct settings {
	/* Put thread forks in the ring too until bpf_ktime_get_ns() reaches this.  A
	 * lease, not a switch: the reader that asked for threads renews it while it
	 * runs, so thread streaming ends soon after that reader dies, however it dies. */
	__u64 threads_until_ns;
	__u32 wakeup_bytes;   /* wake the reader once this much data waits; 0: every record */
	__u32 follow;         /* 1: only processes in the `followed` map (follow mode) */
};

/* A ring buffer record as the kernel lays it out (BPF_RINGBUF_* in
 * include/uapi/linux/bpf.h): an 8-byte header whose first u32 is the length,
 * with its top two bits saying "still being written" and "discarded"; each
 * record starts 8-byte aligned.  Named here for the readers in user space. */
enum ringbuf_record {
	RINGBUF_BUSY_BIT = 1U << 31,
	RINGBUF_DISCARD_BIT = 1U << 30,
	RINGBUF_HDR_SZ = 8,
};

/* The ring space a record of `len` data bytes takes, header included. */
#define RINGBUF_FOOTPRINT(len) ((((__u64)(len)) + RINGBUF_HDR_SZ + 7) & ~7ULL)

#endif
