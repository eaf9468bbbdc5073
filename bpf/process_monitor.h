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
	/* An execve/execveat that returned an error (`events --failed` only: its
	 * programs are attached only while such a reader runs). */
	EVENT_EXEC_FAILED = 4,
};

/* Bits of process_event.flags. */
enum event_flag {
	EVENT_FLAG_THREAD = 1,         /* the new task is a thread, not a process */
	EVENT_FLAG_ARGV_TRUNCATED = 2, /* exec records: argv was cut (see exec_event) */
	/* The process lives in a PID namespace below the host's (a container,
	 * unshare --pid): ns_pid and ns_ppid are its ids there. */
	EVENT_FLAG_PIDNS = 4,
	/* Exit records: read_bytes and write_bytes are the kernel's (it was built
	 * with CONFIG_TASK_IO_ACCOUNTING); without it they are 0 and mean nothing. */
	EVENT_FLAG_IO = 8,
	/* Exec records: the exec changed the effective uid or gid (a set-user-ID or
	 * set-group-ID program); prev_euid and prev_egid (struct exec_event) are the
	 * ids before it, euid and egid those after. */
	EVENT_FLAG_SETID = 16,
};

/* loginuid and sessionid of a process that has none: audit's AUDIT_UID_UNSET and
 * AUDIT_SID_UNSET, also what records carry on a kernel built without CONFIG_AUDIT. */
enum audit_unset {
	AUDIT_ID_UNSET = 0xffffffff,
};

/* How much of a command line exec records keep. */
enum argv_limits {
	ARGV_DEFAULT_BYTES = 4096,  /* `load` keeps this much unless told otherwise */
	ARGV_MAX_BYTES = 16384,     /* the most `load --argv-bytes` may ask for */
	/* Failed execs read each argument through a pointer array in the caller's
	 * memory: at most this many arguments, and half the bytes (the verifier needs
	 * room for the largest read at the largest offset). */
	FAILED_ARGS_MAX = 128,
	FAILED_ARGV_MAX_BYTES = ARGV_MAX_BYTES / 2,
};

/* Fork records are a bare process_event, exit records an exit_event and exec
 * records an exec_event, so a thread storm pays ring space for neither a
 * filename nor a process's usage. */
struct process_event {
	__u64 ts_ns;          /* bpf_ktime_get_ns(): CLOCK_MONOTONIC */
	__u64 duration_ns;    /* exit: lifetime since the process started */
	/* The reader's READER_LOSS_DROPPED as this record was made: every record its
	 * ring refused so far, on any CPU.  It marks the difference to what it marked. */
	__u64 dropped_total;
	/* The process's cgroup in the v2 (default) hierarchy: its kernfs id, the inode
	 * number of its directory on a cgroup2 mount (bpf_get_current_cgroup_id()).
	 * On a hybrid v1/v2 host this is the v2 mount's, e.g. /sys/fs/cgroup/unified. */
	__u64 cgroup_id;
	__u32 type;           /* enum event_type */
	__u32 pid;            /* the task's own id (thread id for threads) */
	__u32 tgid;           /* its process id */
	__u32 ppid;           /* parent process: real_parent->tgid */
	/* Who the process runs as (its objective credentials, task->real_cred), as the
	 * host's user namespace numbers them: the real uid and the effective uid and
	 * gid.  Fork: the child's, a copy of its parent's; exec: after the exec. */
	__u32 uid;
	__u32 euid;
	__u32 egid;
	/* Audit's login uid (/proc/PID/loginuid, auditd's auid): set once at login
	 * (pam_loginuid) and kept across sudo, su and setuid programs; and its login
	 * session (/proc/PID/sessionid, auditd's ses).  AUDIT_ID_UNSET when never
	 * set, or when the kernel has no CONFIG_AUDIT. */
	__u32 loginuid;
	__u32 sessionid;
	__s32 exit_code;      /* exit: the code passed to exit(), else 0 */
	__u32 exit_signal;    /* exit: the signal that killed it, else 0 */
	__u32 flags;          /* EVENT_FLAG_* */
	/* With EVENT_FLAG_PIDNS: tgid and ppid as the process's own PID namespace
	 * sees them (getpid(), getppid() there; ns_ppid 0 when the parent is outside
	 * it, as for a container's init).  Else 0. */
	__u32 ns_pid;
	__u32 ns_ppid;
	char comm[TASK_COMM_LEN];
};

/* An exec (or failed exec) record is only as long as what it holds:
 * sizeof(struct exec_event) + filename_len + argv_len bytes.  data[] holds the
 * filename (no NUL), then the arguments as the kernel lays them out in the new
 * image (mm->arg_start..arg_end): each followed by a NUL.  When the arguments
 * were longer than the reader's argv_bytes (struct reader), argv_len is that
 * bound, the last argument is cut, and EVENT_FLAG_ARGV_TRUNCATED is set. */
struct exec_event {
	struct process_event base;
	__u32 filename_len;   /* < MAX_FILENAME_LEN */
	__u32 argv_len;       /* <= ARGV_MAX_BYTES */
	__u32 argc;           /* arguments the program was given (failed: found, up to FAILED_ARGS_MAX) */
	__s32 error;          /* EVENT_EXEC_FAILED: what the syscall returned (-errno); else 0 */
	/* EVENT_EXEC: the effective uid and gid the task had before the exec (those
	 * of the file it opened to exec, bprm->file->f_cred: opened with its old
	 * credentials).  They differ from euid and egid exactly when
	 * EVENT_FLAG_SETID is set.  EVENT_EXEC_FAILED: its euid and egid. */
	__u32 prev_euid;
	__u32 prev_egid;
	/* EVENT_EXEC: the capabilities the exec added to the task's permitted set
	 * (bits of CAP_*: file capabilities, or a set-user-ID-root program run by
	 * another user); 0 for none, and for failed execs. */
	__u64 cap_gained;
	char data[];
};

/* An exit record: what the whole process cost, read at its last thread's exit
 * (the threads released before it are in signal_struct, those not yet released,
 * a zombie leader among them, in their own task_struct), as the kernel keeps it,
 * for user space to put in the units getrusage() reports.  Its own usage only:
 * wait4() adds that of the children it waited for. */
struct exit_event {
	struct process_event base;
	/* CPU time as the kernel sampled it (task_struct utime, stime: ticks
	 * unless CONFIG_VIRT_CPU_ACCOUNTING_GEN), and the exact time the process
	 * ran (se.sum_exec_runtime): getrusage() splits runtime_ns in the ratio of
	 * utime_ns to stime_ns (cputime_adjust()), and so does user space. */
	__u64 utime_ns;
	__u64 stime_ns;
	__u64 runtime_ns;
	__u64 maxrss_pages;   /* peak resident set, every image it exec'd (signal->maxrss) */
	__u64 min_flt;        /* page faults served without I/O */
	__u64 maj_flt;        /* ... that needed I/O */
	__u64 nvcsw;          /* voluntary context switches (it waited) */
	__u64 nivcsw;         /* involuntary ones (it was preempted) */
	/* With EVENT_FLAG_IO: bytes it had read from and dirtied for storage
	 * (task_io_accounting, /proc/PID/io's read_bytes and write_bytes). */
	__u64 read_bytes;
	__u64 write_bytes;
};

/* The threads of a process an exit record sums (struct exit_event): those not
 * yet released as its last exits, which a process ended by exit_group() has
 * many of.  Past this many, the rest are left out. */
enum exit_limits {
	EXIT_THREADS_READ_MAX = 256,
};

/* Keys of the per-CPU `counters` map. */
enum counter_key {
	COUNTER_PROCESSES = 0, /* new processes (fork of a thread-group leader) */
	COUNTER_THREADS = 1,   /* new threads (clone with CLONE_THREAD) */
	COUNTER_EXECS = 2,
	COUNTER_EXITS = 3,     /* processes that ended (last thread of the group) */
	/* Records the programs tried to put in a reader's ring, summed over the
	 * readers (a record two readers want counts twice). */
	COUNTER_PRODUCED = 4,
	/* ... of which were lost: the reader's ring was full, or (failed execs)
	 * the caller's registers were not found */
	COUNTER_DROPPED = 5,
	COUNTER_UNFOLLOWED = 6, /* follow mode: children of the tree `followed` had no room for */
	/* Records a reader's cgroup filter kept out of its ring (never produced),
	 * summed over the readers: the events above count the whole host. */
	COUNTER_FILTERED = 7,
	COUNTER_MAX = 8,
};

/* Every reader has a slot: a ring buffer of its own in `rings` (an array of
 * maps), what it asks for in `readers`, its counts in `reader_counts` and its
 * losses in `reader_losses`.  The programs build each record once and copy it
 * into the ring of every active reader whose settings want it, so readers never
 * take records from each other, and what one filters out costs its ring nothing.
 * A slot is active while its bit is set in settings.readers. */
enum reader_limits {
	READERS_MAX = 16,
	READER_NAME_LEN = 32, /* a named reader's name, NUL included */
	/* The name of the cgroup a reader filters by (its last path component), NUL
	 * included, for the kernel to follow it when it is made anew; a longer one is
	 * followed by the reader alone (struct reader: cgroup_parent_id). */
	READER_CGROUP_NAME_LEN = 128,
};

/* Bits of struct reader.flags. */
enum reader_flag {
	READER_THREADS = 1, /* thread forks too (`events --threads`) */
	READER_FAILED = 2,  /* failed execs too (`events --failed`) */
	/* Only processes in cgroup `cgroup_id` (at `cgroup_level`; the v2 root is
	 * level 0) or below it, at any depth (`--cgroup`, `--container`). */
	READER_CGROUP = 4,
	/* The slot outlives its reader's process: records keep coming into its ring
	 * while it is down, and it resumes where it stopped (`events --name`). */
	READER_NAMED = 8,
};

/* The value of `readers` for one slot, written by the reader that holds it. */
struct reader {
	__u32 flags;        /* READER_* */
	/* The process reading the slot; 0 while a named reader is down.  When the
	 * process of an unnamed reader ends, however it ends, the exit program sets
	 * 0 and the slot gets nothing more (user space frees it). */
	__u32 owner_tgid;
	__u32 wakeup_bytes; /* wake the reader once this much data waits; 0: every record */
	__u32 cgroup_level;
	__u64 cgroup_id;
	char name[READER_NAME_LEN]; /* a named reader's; empty for the others */
	/* The reader's exec records keep at most this many bytes of argv (0: none),
	 * at most settings.argv_read: the exec program reads no more than the most a
	 * reader keeps, and none while no reader keeps any. */
	__u32 argv_bytes;
	__u32 __pad;
	/* READER_CGROUP: the filter follows its cgroup by path.  When a cgroup named
	 * cgroup_name is made in the cgroup whose id is cgroup_parent_id (a service or
	 * a container restarted), the cgroup_mkdir program sets cgroup_id to the new
	 * one's, before any process can be in it; the reader, when it runs, also looks
	 * its cgroup up again each second.  cgroup_parent_id 0: not followed (the root,
	 * or a name longer than the room here). */
	__u64 cgroup_parent_id;
	char cgroup_name[READER_CGROUP_NAME_LEN];
};

/* A value of the per-CPU `reader_counts` map (one per slot). */
struct reader_count {
	__u64 produced; /* records the programs tried to put in the slot's ring */
	__u64 filtered; /* records its cgroup filter kept out */
};

/* `reader_losses` holds two u64 per slot, at slot * READER_LOSS_KINDS + kind, so
 * that each lost record is marked in the reader's stream exactly once: the
 * programs count the records its ring refused in READER_LOSS_DROPPED (one counter
 * for all CPUs, so each record can carry it as dropped_total), and the reader
 * keeps in READER_LOSS_MARKED how many of those its gap lines reported.  A reader
 * marks dropped_total - marked before a record, and dropped - marked whenever it
 * has caught up, so a loss after the last record is marked too; a named reader
 * that comes back goes on from what it marked. */
enum reader_loss {
	READER_LOSS_DROPPED = 0, /* written by the programs only */
	READER_LOSS_MARKED = 1,  /* written by the reader only */
	READER_LOSS_KINDS = 2,
};

/* Follow mode (`run -- CMD`): the processes of CMD's tree, keyed by tgid.  The
 * fork program adds CMD as the spawner (struct settings) forks it, before it may
 * fork or exec, and every child of a member; the exit program removes a member as
 * it ends (so a reused pid is never taken for one).  A tree wider than this at any
 * moment is counted in COUNTER_UNFOLLOWED, never silently cut. */
enum follow_limits {
	FOLLOWED_MAX_PROCESSES = 32768,
};

/* The one value of the `settings` map, written by `procmon-ctl` after load and
 * as readers come and go (under the instance's admin lock).  All zero (a fresh
 * load) means: no readers, every process on the host, no arguments in exec
 * records (`load` writes ARGV_DEFAULT_BYTES unless told otherwise). */
struct settings {
	__u32 readers;        /* the active reader slots, a bit each */
	__u32 thread_readers; /* ... of which want thread forks (READER_THREADS) */
	__u32 failed_readers; /* ... of which want failed execs (READER_FAILED) */
	__u32 ring_size;      /* the size of a new reader's ring (`load --ring-size`) */
	__u32 follow;         /* 1: only processes in the `followed` map (follow mode) */
	/* A reader's argv_bytes unless it asks for another (`load --argv-bytes`). */
	__u32 argv_bytes;
	/* The most argv_bytes of any active reader: what the exec programs read of a
	 * command line (0: nothing).  Kept by the readers as they come and go. */
	__u32 argv_read;
	/* Follow mode: the process starting CMD (`run`), while it does, as its own PID
	 * namespace knows it, since it may live in one below the host's (a container,
	 * unshare --pid): the inode number of that namespace (/proc/self/ns/pid) and
	 * its getpid() there.  Its forks join the tree.  spawner_tgid 0: none. */
	__u32 spawner_pidns;
	__u32 spawner_tgid;
	/* The slots whose reader filters by cgroup (READER_CGROUP): the programs
	 * leave out those a record's process is not in before they build it, so the
	 * readers left decide how it is made (one: in place in its ring).  Set before
	 * a slot joins `readers`; a bit without it there means nothing. */
	__u32 cgroup_readers;
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
