// SPDX-License-Identifier: GPL-2.0-only
/* Process creation, exec and exit, from BTF-enabled tracepoints.
 *
 * tp_btf rather than the seed's tracepoint/sched/sched_process_fork: since
 * kernel 6.16 the tracepoint record's comm fields are __data_loc strings, and
 * the BTF form hands us both task_structs, so threads and the real parent
 * process are told apart exactly. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include "process_monitor.h"

char LICENSE[] SEC("license") = "GPL";

/* The readers' rings (enum reader_limits): each reader puts a ring of its own,
 * of the size it chose, in its slot.  This inner definition is only the type
 * every ring must have. */
struct reader_ring {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, READERS_MAX);
	__type(key, __u32);
	__array(values, struct reader_ring);
} rings SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, READERS_MAX);
	__type(key, __u32);
	__type(value, struct reader);
} readers SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, READERS_MAX);
	__type(key, __u32);
	__type(value, struct reader_count);
} reader_counts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, READERS_MAX * READER_LOSS_KINDS);
	__type(key, __u32);
	__type(value, __u64);
} reader_losses SEC(".maps");

/* The seed's map, kept so `bpftool map dump name process_count` still works. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} process_count SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, COUNTER_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct settings);
} settings SEC(".maps");

/* Follow mode's tree (see enum follow_limits).  One entry here: the shared
 * instance never follows, and `run` sizes it to FOLLOWED_MAX_PROCESSES at load. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__type(key, __u32);  /* tgid */
	__type(value, __u8);
} followed SEC(".maps");

/* Referenced so the contract's types land in the object's BTF for the decoder test. */
const volatile struct exec_event btf_anchor_exec_event = {};
const volatile enum counter_key btf_anchor_counter_key = COUNTER_MAX;
const volatile enum event_type btf_anchor_event_type = EVENT_FORK;
const volatile enum event_flag btf_anchor_event_flag = EVENT_FLAG_THREAD;
const volatile enum ringbuf_record btf_anchor_ringbuf_record = RINGBUF_HDR_SZ;
const volatile enum follow_limits btf_anchor_follow_limits = FOLLOWED_MAX_PROCESSES;
const volatile enum reader_loss btf_anchor_reader_loss = READER_LOSS_KINDS;
const volatile enum reader_limits btf_anchor_reader_limits = READERS_MAX;
const volatile enum reader_flag btf_anchor_reader_flag = READER_NAMED;
const volatile enum argv_limits btf_anchor_argv_limits = ARGV_MAX_BYTES;
const volatile struct exit_event btf_anchor_exit_event = {};
const volatile enum exit_limits btf_anchor_exit_limits = EXIT_THREADS_READ_MAX;
const volatile enum audit_unset btf_anchor_audit_unset = AUDIT_ID_UNSET;

static __always_inline void add(__u32 key, __u64 n)
{
	__u64 *v = bpf_map_lookup_elem(&counters, &key);

	if (v)
		*v += n; /* per-CPU slot: no atomic needed */
}

static __always_inline void count(__u32 key)
{
	add(key, 1);
}

static __always_inline struct settings *get_settings(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&settings, &zero);
}

/* Follow mode: whether records of process `tgid` are wanted.  Everything else on
 * the host costs this one lookup and no ring space. */
static __always_inline bool wanted(const struct settings *s, __u32 tgid)
{
	return !s || !s->follow || bpf_map_lookup_elem(&followed, &tgid);
}

/* Follow mode: whether `parent`, a task that forks a process, belongs to the
 * process starting CMD (struct settings: spawner_*).  By its id in its own PID
 * namespace, the one the spawner knows itself by (getpid()), and that namespace's
 * inode number, which is the same from every namespace.  The numbers[] entry of
 * the deepest level is the task's own namespace (task_active_pid_ns()). */
static __always_inline bool is_spawner(const struct settings *s, struct task_struct *parent)
{
	struct pid *pid;
	struct upid own = {};
	unsigned int level;

	if (!s || !s->spawner_tgid)
		return false;
	pid = BPF_CORE_READ(parent, group_leader, thread_pid);
	level = BPF_CORE_READ(pid, level);
	if (bpf_core_read(&own, sizeof(own), &pid->numbers[level]))
		return false;
	return (__u32)own.nr == s->spawner_tgid &&
	       BPF_CORE_READ(own.ns, ns.inum) == s->spawner_pidns;
}

/* Kernels before 6.1 keep each cgroup's ancestors' ids, later ones the
 * ancestors themselves: both are indexed by level, so any depth costs one read. */
struct cgroup___ids {
	__u64 ancestor_ids[0];
} __attribute__((preserve_access_index));

/* The id of `cg`'s ancestor at `level` (cg's own at its level).  Helper reads at
 * an address computed at run time: `cg` may come from a tracepoint program (a
 * plain number), and the index is the reader's. */
static __always_inline __u64 ancestor_id(struct cgroup *cg, __u32 level)
{
	struct cgroup___ids *ids = (void *)cg;
	struct cgroup *ancestor = NULL;
	__u64 id = 0;

	if (bpf_core_field_exists(ids->ancestor_ids)) {
		bpf_probe_read_kernel(&id, sizeof(id),
				      (void *)((unsigned long)cg + bpf_core_field_offset(ids->ancestor_ids) +
					       (__u64)level * sizeof(__u64)));
		return id;
	}
	if (bpf_probe_read_kernel(&ancestor, sizeof(ancestor),
				  (void *)((unsigned long)cg + bpf_core_field_offset(cg->ancestors) +
					   (__u64)level * sizeof(ancestor))) ||
	    !ancestor)
		return 0;
	return BPF_CORE_READ(ancestor, kn, id);
}

/* Failed execs read the caller's argv[] this many pointers at a time, and its
 * arguments a page at a time. */
#define ARGV_CHUNK 32
#define ARGV_PAGE 4096

/* Records are built here, then copied into each reader's ring (exec records at
 * their own length: bpf_ringbuf_reserve needs a constant size).  Per CPU: the programs that use
 * it run with preemption off and cannot nest on one CPU.  The failed-exec path
 * reads up to FAILED_ARGV_MAX_BYTES (and a byte more) at an offset the verifier
 * only knows to be below ARGV_MAX_BYTES: the last term is its room (the byte is
 * in MAX_FILENAME_LEN's). */
#define EXEC_SCRATCH_SIZE                                                           \
	(sizeof(struct exec_event) + MAX_FILENAME_LEN + ARGV_MAX_BYTES + FAILED_ARGV_MAX_BYTES)

struct scratch_space {
	/* The record's struct cgroup *, for cgroup_filtered(). */
	__u64 cgroup;
	/* An exec record's argv_len and flags as read, before deliver_to() cuts the
	 * arguments to each reader's argv_bytes; argv_len 0 for the other records. */
	__u32 argv_len;
	__u32 flags;
	char record[EXEC_SCRATCH_SIZE];
	/* A failed exec's argv[] pointers, read a chunk at a time, and the page of the
	 * caller's memory its arguments were last copied from (put_failed_argv) */
	__u64 argv_ptrs[ARGV_CHUNK];
	__u64 argv_page_at;
	char argv_page[ARGV_PAGE];
	/* The usage of a process's threads but the one exiting, summed by
	 * add_other_threads() in the fields of an exit record that it adds up (its
	 * base and maxrss_pages unused), and that thread's task_struct * (a global
	 * function takes scalars only). */
	struct exit_event others;
	__u64 exiting;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct scratch_space);
} scratch_space SEC(".maps");

static __always_inline struct scratch_space *get_scratch_space(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&scratch_space, &zero);
}

/* Whether the reader `r` has ended: an unnamed reader ends with its process,
 * however that ends.  The exit record of that process, `exiting`, ends it here
 * (owner_tgid 0: nothing more for it); the slot is freed by the next procmon-ctl
 * that looks. */
static __always_inline bool has_ended(struct reader *r, __u32 exiting)
{
	if (r->flags & READER_NAMED)
		return false;
	if (r->owner_tgid && r->owner_tgid == exiting)
		r->owner_tgid = 0;
	return !r->owner_tgid;
}

/* Of the slots in `filtering` (readers that filter by cgroup, READER_CGROUP), those
 * whose cgroup the process in `cg` is not in nor below: each counts the record as
 * filtered, and has_ended() ends an unnamed one whose process is `exiting`.
 * Readers that filter at the same level share one read of the ancestor's id.
 * Global: the verifier checks the loop once.  A global function
 * takes scalars only: `cg` comes in scratch_space, where a map value holds the
 * pointer as a plain number, read through helpers. */
__noinline int cgroup_filtered(__u32 filtering, __u32 exiting)
{
	struct scratch_space *sp = get_scratch_space();
	__u32 out = 0, cg_level, read_level = 0, i;
	__u64 ancestor = 0;
	struct cgroup *cg;

	if (!sp)
		return 0;
	cg = (struct cgroup *)sp->cgroup;
	cg_level = BPF_CORE_READ(cg, level);
	for (i = 0; i < READERS_MAX && (filtering >> i); i++) {
		__u32 slot = i; /* its address goes to the helper: the counter stays apart */
		struct reader_count *n;
		struct reader *r;
		__u32 level;

		if (!(filtering & (1U << i)))
			continue;
		r = bpf_map_lookup_elem(&readers, &slot);
		if (!r || !(r->flags & READER_CGROUP))
			continue;
		level = r->cgroup_level;
		if (read_level != level + 1) { /* 0: none read yet */
			ancestor = cg_level < level ? 0 : ancestor_id(cg, level);
			read_level = level + 1;
		}
		if (ancestor == r->cgroup_id)
			continue;
		out |= 1U << i;
		has_ended(r, exiting);
		n = bpf_map_lookup_elem(&reader_counts, &slot);
		if (n)
			n->filtered++;
		count(COUNTER_FILTERED);
	}
	return out;
}

/* `wanting` (a mask of slots) without the readers whose cgroup filter keeps out
 * the process in `cg`: decided before the record is built, so that what a reader
 * filters out costs it nothing more, and the readers left decide how the record
 * is made (for one: in place in its ring). */
static __always_inline __u32 through_filters(const struct settings *s, __u32 wanting,
					     struct cgroup *cg, __u32 exiting)
{
	__u32 filtering = wanting & s->cgroup_readers;
	struct scratch_space *sp;

	if (!filtering)
		return wanting;
	sp = get_scratch_space();
	if (!sp)
		return wanting;
	sp->cgroup = (__u64)cg;
	return wanting & ~(__u32)cgroup_filtered(filtering, exiting);
}

static __always_inline struct exec_event *scratch(void)
{
	struct scratch_space *sp = get_scratch_space();

	return sp ? (struct exec_event *)sp->record : NULL;
}

/* Waking a reader per record is what made the naive design slow: the reader
 * polls on a timer, and is woken early only as the waiting data crosses each
 * multiple of its wakeup_bytes.  Only at the crossing: a missing or stalled
 * reader must not cost a wakeup (an irq_work and a wake_up) on every record
 * after it.  `size` is the record's ring footprint (header included). */
static __always_inline __u64 wakeup_flags(const struct reader *r, void *ring, __u64 size)
{
	__u64 avail, before, step = r->wakeup_bytes;

	if (!step)
		return 0;
	avail = bpf_ringbuf_query(ring, BPF_RB_AVAIL_DATA);
	if (avail < step)
		return BPF_RB_NO_WAKEUP;
	before = avail > size ? avail - size : 0;
	return avail / step != before / step ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP;
}

/* pid_nr_ns(): the id `pid` has in the namespace `ns` at `level`, 0 if it has
 * none there (a parent outside a container).  numbers[] is indexed by a level
 * known only at run time, so these are helper reads. */
static __always_inline __u32 pid_nr_at(struct pid *pid, unsigned int level,
				       struct pid_namespace *ns)
{
	struct upid up = {};

	if (!pid || BPF_CORE_READ(pid, level) < level)
		return 0;
	if (bpf_core_read(&up, sizeof(up), &pid->numbers[level]))
		return 0;
	return up.ns == ns ? up.nr : 0;
}

/* A process in a PID namespace below the host's (`level` > 0): its tgid and its
 * parent's as that namespace sees them (getpid(), getppid() there). */
static __always_inline void put_ns_ids(struct process_event *e, struct task_struct *task,
				       unsigned int level)
{
	struct pid *own = BPF_CORE_READ(task, thread_pid);
	struct pid_namespace *ns = NULL;

	if (bpf_core_read(&ns, sizeof(ns), &own->numbers[level].ns))
		return;
	e->ns_pid = pid_nr_at(BPF_CORE_READ(task, group_leader, thread_pid), level, ns);
	e->ns_ppid = pid_nr_at(BPF_CORE_READ(task, real_parent, group_leader, thread_pid), level, ns);
	e->flags |= EVENT_FLAG_PIDNS;
}

/* Every field of a record but its name (comm), which each kind of program reads
 * its own cheapest way. */
static __always_inline void fill_record(struct process_event *e, __u32 type, __u32 pid,
					 __u32 tgid, __u32 ppid)
{
	e->ts_ns = bpf_ktime_get_ns();
	e->duration_ns = 0;
	e->type = type;
	e->pid = pid;
	e->tgid = tgid;
	e->ppid = ppid;
	e->exit_code = 0;
	e->exit_signal = 0;
	e->flags = 0;
	e->ns_pid = 0;
	e->ns_ppid = 0;
}

/* Who `task` runs as (struct process_event: uid to sessionid), read from its
 * objective credentials, `cred`.  Plain loads where both are BTF-typed.  The
 * audit ids exist only in a kernel built with CONFIG_AUDIT: elsewhere the
 * loader drops the branch that reads them, and they stay unset. */
static __always_inline void put_ids(struct process_event *e, struct task_struct *task,
				    const struct cred *cred)
{
	e->uid = cred->uid.val;
	e->euid = cred->euid.val;
	e->egid = cred->egid.val;
	e->loginuid = AUDIT_ID_UNSET;
	e->sessionid = AUDIT_ID_UNSET;
	if (bpf_core_field_exists(task->loginuid)) {
		e->loginuid = task->loginuid.val;
		e->sessionid = task->sessionid;
	}
}

/* put_ids() through helper reads: `task` is a plain number (a tracepoint
 * program before 5.11). */
static __always_inline void put_ids_read(struct process_event *e, struct task_struct *task)
{
	const struct cred *cred = BPF_CORE_READ(task, real_cred);

	e->uid = BPF_CORE_READ(cred, uid.val);
	e->euid = BPF_CORE_READ(cred, euid.val);
	e->egid = BPF_CORE_READ(cred, egid.val);
	e->loginuid = AUDIT_ID_UNSET;
	e->sessionid = AUDIT_ID_UNSET;
	if (bpf_core_field_exists(task->loginuid)) {
		e->loginuid = BPF_CORE_READ(task, loginuid.val);
		e->sessionid = BPF_CORE_READ(task, sessionid);
	}
}

/* The permitted capabilities of `cred` as one u64 of CAP_* bits.  kernel_cap_t is
 * two u32 halves before 6.3 and an anonymous struct of one u64 since, which CO-RE
 * cannot tell apart by name: eight bytes at the field's offset either way, read
 * by a helper (exec records only). */
static __always_inline __u64 permitted_caps(const struct cred *cred)
{
	__u64 bits = 0;

	bpf_probe_read_kernel(&bits, sizeof(bits),
			      (const void *)cred + bpf_core_field_offset(struct cred, cap_permitted));
	return bits;
}

/* tp_btf programs get BTF-typed task pointers: their fields are plain loads
 * (relocated by CO-RE), not a helper call each as BPF_CORE_READ makes.  Only a
 * process in a PID namespace of its own pays for helper reads. */
static __always_inline void fill_common(struct process_event *e, __u32 type,
					 struct task_struct *task, struct cgroup *cg)
{
	unsigned int level = task->thread_pid->level;

	const __u64 *comm = (const __u64 *)task->comm;

	fill_record(e, type, task->pid, task->tgid, task->real_parent->tgid);
	put_ids(e, task, task->real_cred);
	/* Two loads, not a string copy: the name is always NUL-terminated within its
	 * 16 bytes, and what may follow the NUL (where exec renames with strlcpy, the
	 * tail of the task's older, longer name) is the task's own and ignored by
	 * every reader. */
	((__u64 *)e->comm)[0] = comm[0];
	((__u64 *)e->comm)[1] = comm[1];
	e->cgroup_id = cg->kn->id;
	if (level)
		put_ns_ids(e, task, level);
}


/* A reader's ring, once the reader in `slot` takes a record (struct reader). */
struct taker {
	struct reader *reader;
	void *ring;
	__u64 *lost; /* its READER_LOSS_DROPPED */
};

/* Whether the reader in `slot`, whose cgroup filter (if any) let the record
 * through (cgroup_filtered()), takes it: it has a reader (unnamed: whose process
 * is not `exiting`, the process an exit record is of, whose slot ends with it:
 * struct reader, owner_tgid).  Counted as produced. */
static __always_inline bool takes(__u32 slot, __u32 exiting, struct taker *t)
{
	__u32 loss_key = slot * READER_LOSS_KINDS + READER_LOSS_DROPPED;
	struct reader_count *n;
	struct reader *r;

	r = bpf_map_lookup_elem(&readers, &slot);
	if (!r)
		return false;
	if (has_ended(r, exiting))
		return false;
	n = bpf_map_lookup_elem(&reader_counts, &slot);
	t->reader = r;
	t->ring = bpf_map_lookup_elem(&rings, &slot);
	t->lost = bpf_map_lookup_elem(&reader_losses, &loss_key);
	if (!t->ring || !t->lost)
		return false;
	if (n)
		n->produced++;
	count(COUNTER_PRODUCED);
	return true;
}

/* A record the reader's full ring refused. */
static __always_inline void refused(const struct taker *t)
{
	count(COUNTER_DROPPED);
	/* Atomic: shared by all CPUs.  Only a lost record pays for it. */
	__sync_fetch_and_add(t->lost, 1);
}

/* Copies the record in scratch_space (`size` bytes) into the ring of the reader
 * in `slot` if it takes it, exec records cut to its argv_bytes.  Global, not
 * static: the verifier checks it once, not once per reader and per call site. */
__noinline int deliver_to(__u32 slot, __u32 size, __u32 exiting)
{
	struct scratch_space *sp = get_scratch_space();
	struct taker t;
	__u64 len;

	if (!sp || !takes(slot, exiting, &t))
		return 0;
	len = size;
	if (sp->argv_len) {
		struct exec_event *x = (struct exec_event *)sp->record;
		__u32 keep = sp->argv_len;

		x->base.flags = sp->flags;
		if (keep > t.reader->argv_bytes) {
			keep = t.reader->argv_bytes;
			x->base.flags |= EVENT_FLAG_ARGV_TRUNCATED;
		}
		x->argv_len = keep;
		len -= sp->argv_len - keep;
	}
	((struct process_event *)sp->record)->dropped_total = *(volatile __u64 *)t.lost;
	if (len > EXEC_SCRATCH_SIZE) /* never: for the verifier, which loses the bound */
		len = EXEC_SCRATCH_SIZE;
	barrier_var(len); /* no unchecked copy of it reaches the helper */
	if (bpf_ringbuf_output(t.ring, sp->record, len,
			       wakeup_flags(t.reader, t.ring, RINGBUF_FOOTPRINT(len))))
		refused(&t);
	return 0;
}

/* The one reader of `wanting`, a mask of slots, as its slot + 1; 0 when more than
 * one reader (or none) wants the record. */
static __always_inline __u32 lone_reader(__u32 wanting)
{
	__u32 i;

	if (wanting & (wanting - 1))
		return 0;
	for (i = 0; i < READERS_MAX; i++)
		if (wanting == 1U << i)
			return i + 1;
	return 0;
}

/* A fork or exit record reserved in the ring of the reader in `slot` if it takes
 * it (NULL if not, or its ring is full), for the program to fill in place and
 * submit(): with one reader, a record is never built twice nor copied. */
static __always_inline struct process_event *reserve_for(__u32 slot, __u32 exiting,
							  struct taker *t, __u64 size)
{
	struct process_event *e;

	if (!takes(slot, exiting, t))
		return NULL;
	e = bpf_ringbuf_reserve(t->ring, size, 0);
	if (!e) {
		refused(t);
		return NULL;
	}
	e->dropped_total = *(volatile __u64 *)t->lost;
	return e;
}

static __always_inline void submit(struct process_event *e, const struct taker *t, __u64 size)
{
	bpf_ringbuf_submit(e, wakeup_flags(t->reader, t->ring, RINGBUF_FOOTPRINT(size)));
}

/* The record in scratch_space to each reader of `wanting` (a mask of slots,
 * through_filters()).  `argv_len`: the bytes of argv an exec record holds, at
 * the end of its `size` (0 for the others). */
static __always_inline void deliver(__u32 wanting, __u32 size, __u32 argv_len, __u32 exiting)
{
	struct scratch_space *sp = get_scratch_space();
	__u32 i;

	if (!sp)
		return;
	sp->argv_len = argv_len;
	if (argv_len)
		sp->flags = ((struct process_event *)sp->record)->flags;
	/* Up to the highest slot wanting it: one pass for a reader in slot 0. */
	for (i = 0; i < READERS_MAX && (wanting >> i); i++)
		if (wanting & (1U << i))
			deliver_to(i, size, exiting);
}

/* A record lost before it could be made (a failed exec whose caller's registers
 * were not found): counted, and marked in the stream of the reader in `slot`. */
__noinline int lost_for(__u32 slot)
{
	__u32 loss_key = slot * READER_LOSS_KINDS + READER_LOSS_DROPPED;
	struct reader_count *n = bpf_map_lookup_elem(&reader_counts, &slot);
	__u64 *dropped = bpf_map_lookup_elem(&reader_losses, &loss_key);

	if (n)
		n->produced++;
	if (dropped)
		__sync_fetch_and_add(dropped, 1);
	count(COUNTER_PRODUCED);
	count(COUNTER_DROPPED);
	return 0;
}

static __always_inline void fill_fork(struct process_event *e, struct task_struct *child,
				      struct cgroup *cg, bool thread)
{
	fill_common(e, EVENT_FORK, child, cg);
	if (thread)
		e->flags |= EVENT_FLAG_THREAD;
}

SEC("tp_btf/sched_process_fork")
int BPF_PROG(handle_fork, struct task_struct *parent, struct task_struct *child)
{
	struct settings *s = get_settings();
	struct exec_event *e;
	bool thread = child->pid != child->tgid;
	/* The child's own: CLONE_INTO_CGROUP can start it outside its parent's. */
	struct cgroup *cg = child->cgroups->dfl_cgrp;
	__u32 wanting, lone;

	if (!s)
		return 0;
	/* The forking task's process, not child->real_parent: with CLONE_PARENT the
	 * child of a member is still part of the tree it came from (as strace -f has it).
	 * In follow mode a process the spawner forks is CMD, the tree's first member;
	 * other forks pay for that check only while a spawner is set (run's spawn). */
	if (!wanted(s, parent->tgid) && (thread || !is_spawner(s, parent)))
		return 0;
	if (thread) {
		count(COUNTER_THREADS);
		wanting = s->readers & s->thread_readers;
	} else {
		__u32 zero = 0;
		__u64 *seed_count = bpf_map_lookup_elem(&process_count, &zero);

		count(COUNTER_PROCESSES);
		if (seed_count)
			__sync_fetch_and_add(seed_count, 1);
		if (s->follow) {
			__u32 tgid = child->tgid;
			__u8 one = 1;

			if (bpf_map_update_elem(&followed, &tgid, &one, BPF_ANY))
				count(COUNTER_UNFOLLOWED);
		}
		wanting = s->readers;
	}
	wanting = through_filters(s, wanting, cg, 0);
	if (!wanting)
		return 0;
	lone = lone_reader(wanting);
	if (lone) {
		struct taker t;
		struct process_event *f = reserve_for(lone - 1, 0, &t, sizeof(*f));

		if (f) {
			fill_fork(f, child, cg, thread);
			submit(f, &t, sizeof(*f));
		}
		return 0;
	}
	e = scratch();
	if (!e)
		return 0;
	fill_fork(&e->base, child, cg, thread);
	deliver(wanting, sizeof(e->base), 0, 0);
	return 0;
}

/* The bytes of argv to read: the most any active reader keeps, within `most`. */
static __always_inline __u32 argv_limit(const struct settings *s, __u32 most)
{
	__u32 limit = s ? s->argv_read : 0;

	return limit < most ? limit : most;
}

/* Reads the filename into e->data; returns its length (no NUL). */
static __always_inline __u32 put_filename(struct exec_event *e, const void *name, bool user)
{
	long n = user ? bpf_probe_read_user_str(e->data, MAX_FILENAME_LEN, name)
		      : bpf_probe_read_kernel_str(e->data, MAX_FILENAME_LEN, name);

	n = n > 0 ? n - 1 : 0;
	if (n >= MAX_FILENAME_LEN)
		n = MAX_FILENAME_LEN - 1;
	e->filename_len = n;
	return n;
}

/* The new image's arguments are in its own memory, written by the kernel a
 * moment ago (copy_strings): one bounded read of mm->arg_start..arg_end, so no
 * user pointer is followed and nothing can fault. */
SEC("tp_btf/sched_process_exec")
int BPF_PROG(handle_exec, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
{
	struct settings *s = get_settings();
	struct cgroup *cg = p->cgroups->dfl_cgrp;
	const struct cred *before;
	struct exec_event *e;
	struct mm_struct *mm;
	__u64 start, size;
	__u32 limit, n, wanting;

	if (!s || !wanted(s, p->tgid))
		return 0;
	count(COUNTER_EXECS);
	wanting = through_filters(s, s->readers, cg, 0);
	if (!wanting)
		return 0;
	e = scratch();
	if (!e)
		return 0;
	fill_common(&e->base, EVENT_EXEC, p, cg);
	/* The credentials before the exec are gone (commit_creds() put them), but the
	 * file it runs (or a script's interpreter) was opened with them, before
	 * anything was committed: its f_cred holds them for as long as bprm does. */
	before = bprm->file->f_cred;
	e->prev_euid = before->euid.val;
	e->prev_egid = before->egid.val;
	if (e->prev_euid != e->base.euid || e->prev_egid != e->base.egid)
		e->base.flags |= EVENT_FLAG_SETID;
	/* Only an exec the kernel made secure (AT_SECURE: set-ID, or capabilities
	 * gained by a user other than root) can have gained any: the two helper reads
	 * are paid there alone, not by every exec. */
	e->cap_gained = 0;
	if (BPF_CORE_READ_BITFIELD(bprm, secureexec))
		e->cap_gained = permitted_caps(p->real_cred) & ~permitted_caps(before);
	e->error = 0;
	e->argc = bprm->argc;
	n = put_filename(e, bprm->filename, false);

	mm = p->mm;
	start = mm->arg_start;
	size = mm->arg_end - start;
	limit = argv_limit(s, ARGV_MAX_BYTES);
	if (size > limit) {
		size = limit;
		e->base.flags |= EVENT_FLAG_ARGV_TRUNCATED;
	}
	if (size > ARGV_MAX_BYTES) /* for the verifier: limit is at most this */
		size = ARGV_MAX_BYTES;
	if (size && bpf_probe_read_user(e->data + n, size, (const void *)start)) {
		size = 0;
		e->base.flags |= EVENT_FLAG_ARGV_TRUNCATED;
	}
	e->argv_len = size;
	deliver(wanting, sizeof(*e) + n + size, size, 0);
	return 0;
}

/* Failed execs (EVENT_EXEC_FAILED), from the exit of execve/execveat alone: when
 * the syscall returns an error, its caller's registers still hold the path and
 * argv it passed (the kernel keeps them at the top of the thread's kernel stack,
 * task_pt_regs()), and its memory is as it was, since a failed exec replaced
 * nothing.  No entry program, no map of execs in progress: an exec that succeeds
 * costs one program run that returns at once, and an exec that began before the
 * program was attached is recorded like any other.  These programs are attached
 * only while an `events --failed` reader runs (enabling syscall tracepoints slows
 * every syscall of every process). */

/* x86_64's kernel stack without KASAN, 16 KiB since 3.15: where task_pt_regs() is
 * on kernels without bpf_task_pt_regs() (before 5.15). */
#define X86_64_THREAD_SIZE 16384

/* The caller's registers, copied into `regs`: false if they cannot be found, which
 * on x86 is checked: they must be those of syscall `nr`, the one returning. */
static __always_inline bool syscall_regs(struct pt_regs *regs, long nr)
{
	const void *at;

	if (bpf_core_enum_value_exists(enum bpf_func_id, BPF_FUNC_task_pt_regs)) {
		at = (const void *)bpf_task_pt_regs(bpf_get_current_task_btf());
	} else {
#ifdef __TARGET_ARCH_x86
		struct task_struct *task = (struct task_struct *)bpf_get_current_task();

		at = (const void *)((unsigned long)BPF_CORE_READ(task, stack) + X86_64_THREAD_SIZE -
				    sizeof(*regs));
#else
		return false;
#endif
	}
	if (bpf_probe_read_kernel(regs, sizeof(*regs), at))
		return false;
#ifdef __TARGET_ARCH_x86
	return (int)regs->orig_ax == (int)nr;
#else
	return true;
#endif
}

/* Reads argv[] of the caller into e->data after the filename's `n` bytes;
 * returns the bytes kept.  The pointers come ARGV_CHUNK at a time into `ptrs`
 * (one read for most command lines), one at a time where a chunk reaches past
 * the end of the caller's mapping; an unreadable pointer ends the list, as a
 * NULL does.  The running count lives in e->argv_len and is read back each time
 * round: the verifier then sees every pass alike (an unknown count, checked
 * against the bounds), instead of one state per count so far, which took 256
 * arguments close to its limit of a million instructions.  Global, not static:
 * the verifier checks it once for both syscalls' programs, and its page logic
 * is most of their verification. */
__noinline int put_failed_argv(__u32 n, __u32 limit, __u64 argv_at)
{
	const char *const *argv = (const char *const *)argv_at;
	struct scratch_space *sp = get_scratch_space();
	volatile __u32 *kept;
	struct exec_event *e;
	__u64 *ptrs;
	__u32 i, k;

	if (!sp)
		return 0;
	e = (struct exec_event *)sp->record;
	kept = &e->argv_len;
	ptrs = sp->argv_ptrs;

	*kept = 0;
	sp->argv_page_at = 0; /* none: page 0 is never the caller's */
	for (i = 0; i < FAILED_ARGS_MAX; i++) {
		__u32 j = i & (ARGV_CHUNK - 1);
		__u32 used = *kept;
		__u64 room, page, off, size;
		const char *arg;
		char *dst;
		long got;

		if (!j && bpf_probe_read_user(ptrs, ARGV_CHUNK * sizeof(*ptrs), &argv[i])) {
			/* A failed read leaves zeros: each pointer is 0 or as read. */
			for (k = 0; k < ARGV_CHUNK; k++)
				if (bpf_probe_read_user(&ptrs[k], sizeof(*ptrs), &argv[i + k]) ||
				    !ptrs[k])
					break;
		}
		arg = (const char *)ptrs[j];
		if (!arg)
			return *kept;
		if (used >= limit || used > FAILED_ARGV_MAX_BYTES)
			break;
		room = limit - used;
		/* For the verifier, which cannot relate limit and used: room is in
		 * 1..limit, and limit is at most FAILED_ARGV_MAX_BYTES.  The barrier
		 * keeps the compiler from passing an unchecked copy of it. */
		if (room > FAILED_ARGV_MAX_BYTES)
			room = FAILED_ARGV_MAX_BYTES;
		barrier_var(room);
		/* The mask changes nothing (n + used < ARGV_MAX_BYTES) but bounds the
		 * offset for the verifier, which loses the sum's range. */
		dst = e->data + ((n + used) & (ARGV_MAX_BYTES - 1));
		*dst = 0; /* an empty argument's NUL, should the helper not write it */
		/* A read from the caller's memory costs far more than its length: the
		 * arguments are copied out of a copy of their page, one read for all those
		 * on the same page (a whole page is mapped or not).  One that does not end
		 * there, or whose page cannot be read, is read on its own.  A byte more
		 * than the room: an argument that fits, its NUL included, reads shorter
		 * than that, and one that does not reads that long. */
		got = -1;
		page = (__u64)arg & ~(__u64)(ARGV_PAGE - 1);
		off = (__u64)arg & (ARGV_PAGE - 1);
		if (page != (sp->argv_page_at & ~1ULL)) {
			sp->argv_page_at = page;
			/* Unreadable: marked (bit 0), so that it is not tried again. */
			if (bpf_probe_read_user(sp->argv_page, ARGV_PAGE, (const void *)page))
				sp->argv_page_at = page | 1;
		}
		if (page == sp->argv_page_at) {
			size = ARGV_PAGE - off;
			if (size > room + 1)
				size = room + 1;
			barrier_var(size);
			if (size > FAILED_ARGV_MAX_BYTES + 1) /* never: for the verifier */
				size = FAILED_ARGV_MAX_BYTES + 1;
			if (size < 1)
				size = 1;
			got = bpf_probe_read_kernel_str(dst, size, sp->argv_page + off);
			if (got == size && size <= room)
				got = -1; /* it goes on past its page */
		}
		if (got < 0)
			got = bpf_probe_read_user_str(dst, room + 1, arg);
		if (got < 0)
			break;
		/* An empty argument reads as 0 on 5.10, as 1 (its NUL) on later kernels:
		 * count its NUL.  (got - 1) >> 63 is 1 for 0 only, with no branch. */
		got += (__u64)(got - 1) >> 63;
		e->argc = i + 1;
		/* A cut argument keeps the room's bytes and no NUL, as in a successful
		 * exec's record. */
		if (got > room) {
			*kept = used + room;
			break;
		}
		*kept = used + got;
	}
	e->base.flags |= EVENT_FLAG_ARGV_TRUNCATED;
	return *kept;
}

/* `execveat`: the path and argv are the syscall's second and third arguments,
 * not its first and second. */
static __always_inline int exec_returned(const struct trace_event_raw_sys_exit *ctx, bool execveat)
{
	long ret = ctx->ret;
	struct scratch_space *sp;
	struct task_struct *task;
	struct exec_event *e;
	struct settings *s;
	struct pt_regs regs;
	const void *filename;
	const char *const *argv;
	unsigned int level;
	struct cgroup *cg;
	__u32 n, used, wanting;
	bool btf;
	__u64 id;

	/* An exec that succeeded: nothing to record. */
	if (ret >= 0)
		return 0;
	id = bpf_get_current_pid_tgid();
	s = get_settings();
	if (!s || !wanted(s, id >> 32))
		return 0;
	wanting = s->readers & s->failed_readers;
	if (!wanting)
		return 0;
	/* Since 5.11 the task is BTF-typed here too, and its fields are plain loads;
	 * before, a tracepoint program's task pointer is a plain number, read
	 * through helpers.  Chosen at load: the verifier sees one of the two. */
	btf = bpf_core_enum_value_exists(enum bpf_func_id, BPF_FUNC_get_current_task_btf);
	if (btf) {
		task = bpf_get_current_task_btf();
		cg = task->cgroups->dfl_cgrp;
	} else {
		task = (struct task_struct *)bpf_get_current_task();
		cg = BPF_CORE_READ(task, cgroups, dfl_cgrp);
	}
	wanting = through_filters(s, wanting, cg, 0);
	if (!wanting)
		return 0;
	if (!syscall_regs(&regs, ctx->id)) {
		/* A failure no record can show, lost for each reader of failed execs. */
		__u32 i;

		for (i = 0; i < READERS_MAX && (wanting >> i); i++)
			if (wanting & (1U << i))
				lost_for(i);
		return 0;
	}
	if (execveat) {
		filename = (const void *)PT_REGS_PARM2_SYSCALL(&regs);
		argv = (const char *const *)PT_REGS_PARM3_SYSCALL(&regs);
	} else {
		filename = (const void *)PT_REGS_PARM1_SYSCALL(&regs);
		argv = (const char *const *)PT_REGS_PARM2_SYSCALL(&regs);
	}
	sp = get_scratch_space();
	if (!sp)
		return 0;
	e = (struct exec_event *)sp->record;
	if (btf) {
		fill_common(&e->base, EVENT_EXEC_FAILED, task, cg);
	} else {
		fill_record(&e->base, EVENT_EXEC_FAILED, (__u32)id, id >> 32,
			    BPF_CORE_READ(task, real_parent, tgid));
		bpf_get_current_comm(e->base.comm, sizeof(e->base.comm)); /* zero-padded */
		e->base.cgroup_id = bpf_get_current_cgroup_id();
		put_ids_read(&e->base, task);
		level = BPF_CORE_READ(task, thread_pid, level);
		if (level)
			put_ns_ids(&e->base, task, level);
	}
	e->error = ret;
	e->prev_euid = e->base.euid; /* it runs on as it was */
	e->prev_egid = e->base.egid;
	e->cap_gained = 0;
	e->argc = 0;
	n = put_filename(e, filename, true);
	used = put_failed_argv(n, argv_limit(s, FAILED_ARGV_MAX_BYTES), (__u64)argv);
	if (used > FAILED_ARGV_MAX_BYTES)
		used = FAILED_ARGV_MAX_BYTES;
	e->argv_len = used;
	deliver(wanting, sizeof(*e) + n + used, used, 0);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_execve")
int handle_execve_exit(struct trace_event_raw_sys_exit *ctx)
{
	return exec_returned(ctx, false);
}

SEC("tracepoint/syscalls/sys_exit_execveat")
int handle_execveat_exit(struct trace_event_raw_sys_exit *ctx)
{
	return exec_returned(ctx, true);
}

/* Processes whose exit record is written, so that only one of their threads
 * writes it.  Keyed by tgid and the leader's start time, so a reused pid is a
 * new key; an entry is needed only while a group's last threads pass the
 * tracepoint, so the LRU may forget old ones. */
struct exit_key {
	__u64 start_time;
	__u32 tgid;
	__u32 __pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, struct exit_key);
	__type(value, __u8);
} exited SEC(".maps");

#define SIGNAL_GROUP_EXIT 0x4 /* signal_struct.flags, the same value since 2.6 */

/* The process's exit status as wait() reports it to the parent
 * (wait_task_zombie): the group's code after exit_group() or a fatal signal,
 * else the leader's own. */
static __always_inline int process_exit_status(struct task_struct *leader)
{
	struct signal_struct *sig = leader->signal;

	if (sig->flags & SIGNAL_GROUP_EXIT)
		return sig->group_exit_code;
	return leader->exit_code;
}

/* The tracepoint's record layout from 6.16 on, when it gained group_dead: its
 * presence in the kernel's BTF says the program is passed group_dead too. */
struct trace_event_raw_sched_process_exit___group_dead {
	bool group_dead;
} __attribute__((preserve_access_index));

/* The tracepoint's group_dead (6.16+): the thread that took signal->live to 0. */
static __always_inline bool has_group_dead(void)
{
	return bpf_core_field_exists(struct trace_event_raw_sched_process_exit___group_dead,
				     group_dead);
}

/* Exactly one thread of each process writes its exit record, the last.  This is
 * each exit's first test, so a thread that is not the last (most exits of a
 * threaded program) costs one load and touches nothing else.  From 6.16 the
 * tracepoint says so; before, each thread has decremented signal->live before
 * it gets here, so 0 means every thread of the group is exiting, and threads
 * that exit together may all read 0: writes_exit() settles which. */
static __always_inline bool may_be_last(struct task_struct *p, __u64 *ctx)
{
	if (has_group_dead())
		return (bool)ctx[1];
	return p->signal->live.counter == 0;
}

/* Whether `p`, which may_be_last(), writes the record: before 6.16 the first
 * thread to claim the group in `exited` does.  That insert (a bucket lock, a
 * free LRU node) is most of an exit's cost, and a process whose last thread is
 * the only one not yet released (signal->nr_threads 1: every single-threaded
 * process) needs none: a thread that read 0 beside it would have claimed the
 * group before its release, so a lookup settles it. */
static __always_inline bool writes_exit(struct task_struct *p, struct exit_key *key)
{
	struct signal_struct *sig = p->signal;
	__u8 one = 1;

	if (has_group_dead())
		return true;
	if (sig->nr_threads == 1)
		return !bpf_map_lookup_elem(&exited, key);
	return !bpf_map_update_elem(&exited, key, &one, BPF_NOEXIST);
}

/* The usage of the threads of the process of sp->exiting but that one, into
 * sp->others: those not yet released, still on the group's thread list (a
 * zombie leader, threads exiting beside this one); the released ones' is in
 * signal_struct.  Global: the verifier checks the loop once; its pointers are
 * plain numbers here, read through helpers. */
__noinline int add_other_threads(void)
{
	struct scratch_space *sp = get_scratch_space();
	__u64 node_offset = bpf_core_field_offset(struct task_struct, thread_node);
	struct signal_struct *sig;
	struct task_struct *t;
	struct list_head *pos;
	__u64 self_at, head;
	__u32 i;

	if (!sp)
		return 0;
	__builtin_memset(&sp->others, 0, sizeof(sp->others));
	self_at = sp->exiting;
	sig = BPF_CORE_READ((struct task_struct *)self_at, signal);
	head = (__u64)sig + bpf_core_field_offset(sig->thread_head);
	pos = BPF_CORE_READ(sig, thread_head.next);
	for (i = 0; i < EXIT_THREADS_READ_MAX && pos && (__u64)pos != head; i++) {
		t = (struct task_struct *)((__u64)pos - node_offset);
		if ((__u64)t != self_at) {
			struct exit_event *sum = &sp->others;

			sum->utime_ns += BPF_CORE_READ(t, utime);
			sum->stime_ns += BPF_CORE_READ(t, stime);
			sum->runtime_ns += BPF_CORE_READ(t, se.sum_exec_runtime);
			sum->min_flt += BPF_CORE_READ(t, min_flt);
			sum->maj_flt += BPF_CORE_READ(t, maj_flt);
			sum->nvcsw += BPF_CORE_READ(t, nvcsw);
			sum->nivcsw += BPF_CORE_READ(t, nivcsw);
			if (bpf_core_field_exists(t->ioac.read_bytes)) {
				sum->read_bytes += BPF_CORE_READ(t, ioac.read_bytes);
				sum->write_bytes += BPF_CORE_READ(t, ioac.write_bytes);
			}
		}
		pos = BPF_CORE_READ(t, thread_node.next);
	}
	return 0;
}

/* What the process cost (struct exit_event): the released threads' in
 * signal_struct, plus the exiting thread `p`'s own, plus the others not yet
 * released.  A process of one thread (every fork child that did not make
 * threads) costs plain loads only, and those of signal_struct's counts only once
 * a thread was released: every thread has run, so a process none of whose
 * threads was released has no run time there, and reading that first skips the
 * rest (three cache lines of an exit).  Before 6.16 the thread writing the
 * record may not be the one that ended the group (writes_exit): a thread exiting
 * beside it adds what it has so far, and the peak RSS may miss the last image's
 * part if the group's ending thread has not recorded it yet (a moment after). */
static __always_inline void fill_usage(struct exit_event *x, struct task_struct *p)
{
	struct signal_struct *sig = p->signal;
	__u64 released = sig->sum_sched_runtime;
	bool io = bpf_core_field_exists(p->ioac.read_bytes);

	x->utime_ns = p->utime;
	x->stime_ns = p->stime;
	x->runtime_ns = released + p->se.sum_exec_runtime;
	x->maxrss_pages = sig->maxrss;
	x->min_flt = p->min_flt;
	x->maj_flt = p->maj_flt;
	x->nvcsw = p->nvcsw;
	x->nivcsw = p->nivcsw;
	x->read_bytes = 0;
	x->write_bytes = 0;
	if (io) {
		x->read_bytes = p->ioac.read_bytes;
		x->write_bytes = p->ioac.write_bytes;
		x->base.flags |= EVENT_FLAG_IO;
	}
	if (!released)
		return;
	x->utime_ns += sig->utime;
	x->stime_ns += sig->stime;
	x->min_flt += sig->min_flt;
	x->maj_flt += sig->maj_flt;
	x->nvcsw += sig->nvcsw;
	x->nivcsw += sig->nivcsw;
	if (io) {
		x->read_bytes += sig->ioac.read_bytes;
		x->write_bytes += sig->ioac.write_bytes;
	}
}

/* The usage of the threads other than the exiting one (add_other_threads), added. */
static __always_inline void add_others(struct exit_event *x, const struct exit_event *sum)
{
	x->utime_ns += sum->utime_ns;
	x->stime_ns += sum->stime_ns;
	x->runtime_ns += sum->runtime_ns;
	x->min_flt += sum->min_flt;
	x->maj_flt += sum->maj_flt;
	x->nvcsw += sum->nvcsw;
	x->nivcsw += sum->nivcsw;
	x->read_bytes += sum->read_bytes;
	x->write_bytes += sum->write_bytes;
}

/* The record is the process's, whichever thread went last: its id, name, parent,
 * cgroup and lifetime are the leader's; its usage is the whole group's.
 * `others`: what add_other_threads() summed, NULL when `p` was the last one. */
static __always_inline void fill_exit(struct exit_event *x, struct task_struct *p,
				      struct task_struct *leader, struct cgroup *cg,
				      __u64 start_time, const struct scratch_space *others)
{
	struct process_event *e = &x->base;
	int status = process_exit_status(leader);

	fill_common(e, EVENT_EXIT, leader, cg);
	e->exit_code = (status >> 8) & 0xff;
	e->exit_signal = status & 0x7f;
	e->duration_ns = e->ts_ns - start_time;
	fill_usage(x, p);
	if (others)
		add_others(x, &others->others);
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(handle_exit, struct task_struct *p)
{
	struct scratch_space *others = NULL;
	struct task_struct *leader;
	struct exit_key key = {};
	struct settings *s;
	struct exit_event *e;
	struct cgroup *cg;
	__u32 wanting, lone;

	if (!may_be_last(p, ctx))
		return 0;
	leader = p->group_leader;
	s = get_settings();
	key.tgid = p->tgid;
	if (!s || !wanted(s, key.tgid))
		return 0;
	key.start_time = leader->start_time;
	if (!writes_exit(p, &key))
		return 0;
	if (s->follow)
		bpf_map_delete_elem(&followed, &key.tgid); /* its pid may be reused from now on */
	count(COUNTER_EXITS);
	if (!s->readers)
		return 0;
	cg = leader->cgroups->dfl_cgrp;
	wanting = through_filters(s, s->readers, cg, key.tgid);
	if (!wanting)
		return 0;
	/* Threads besides this one not yet released (a zombie leader among them). */
	if (p->signal->nr_threads > 1) {
		others = get_scratch_space();
		if (!others)
			return 0;
		others->exiting = (__u64)p;
		add_other_threads();
	}
	lone = lone_reader(wanting);
	if (lone) {
		struct taker t;
		struct exit_event *f = (struct exit_event *)reserve_for(lone - 1, key.tgid, &t,
									 sizeof(*f));

		if (f) {
			fill_exit(f, p, leader, cg, key.start_time, others);
			submit(&f->base, &t, sizeof(*f));
		}
		return 0;
	}
	e = (struct exit_event *)scratch();
	if (!e)
		return 0;
	fill_exit(e, p, leader, cg, key.start_time, others);
	deliver(wanting, sizeof(*e), 0, key.tgid);
	return 0;
}

/* A reader's cgroup made anew (struct reader: cgroup_parent_id): a cgroup is made,
 * before any process can be in it; every filtering reader whose cgroup had this
 * one's name and parent takes the new one's id.  Runs only as cgroups are made. */
SEC("tp_btf/cgroup_mkdir")
int BPF_PROG(handle_cgroup_mkdir, struct cgroup *cgrp, const char *path)
{
	char name[READER_CGROUP_NAME_LEN] = {};
	struct cgroup_subsys_state *parent = cgrp->self.parent;
	__u64 parent_id, *got = (__u64 *)name;
	__u32 slot, i;

	if (!parent)
		return 0;
	parent_id = parent->cgroup->kn->id;
	if (bpf_probe_read_kernel_str(name, sizeof(name), cgrp->kn->name) <= 0)
		return 0;
	for (slot = 0; slot < READERS_MAX; slot++) {
		__u32 key = slot; /* its address goes to the helper: the counter stays apart */
		struct reader *r = bpf_map_lookup_elem(&readers, &key);
		const __u64 *want;
		bool same = true;

		if (!r || !(r->flags & READER_CGROUP) || r->cgroup_parent_id != parent_id)
			continue;
		want = (const __u64 *)r->cgroup_name;
		for (i = 0; i < READER_CGROUP_NAME_LEN / 8; i++)
			if (got[i] != want[i])
				same = false;
		if (same)
			r->cgroup_id = cgrp->kn->id;
	}
	return 0;
}
