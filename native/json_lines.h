/* SPDX-License-Identifier: GPL-2.0-only */
/* The interface of libprocmon_json.so (json_lines.c), the C formatter of
 * `procmon-ctl events --json`.  procmon_ctl/abi.py mirrors it; pm_abi_info()
 * tells procmon_ctl/json_native.py which record layouts the library was built
 * with, and a library that disagrees with the Python side is not used. */
#ifndef PROCMON_JSON_LINES_H
#define PROCMON_JSON_LINES_H

#include <stdint.h>

typedef uint32_t __u32;
typedef int32_t __s32;
typedef int64_t __s64;
typedef uint64_t __u64;
#include "process_monitor.h"

/* Why pm_json_lines() returned. */
enum pm_stop {
	PM_STOP_CAUGHT_UP = 0, /* no submitted record left (or the next is still being written) */
	PM_STOP_LIMIT = 1,     /* max_records formatted */
	PM_STOP_FULL = 2,      /* the output buffer cannot take a worst-case line more */
	PM_STOP_FOREIGN = 3,   /* the record at pos is left to the caller */
};

/* The cgroups the formatter knows: an open-addressing table filled by Python
 * (procmon_ctl/json_native.py), since turning an id into a path and a container
 * is user space's work (procmon_ctl/cgroups.py).  A record whose cgroup is not
 * in it goes back to Python, which formats it and adds its cgroup. */
enum pm_cgroup_limits {
	/* The longest fragment the table takes (longer: Python's): a path of PATH_MAX
	 * (4096) bytes, none of them UTF-8 (\xNN each, 5 bytes in JSON with its
	 * backslash doubled), and the container's fields.  A line needs the room of
	 * its own fragment only. */
	PM_CGROUP_JSON_MAX = 32768,
};

struct pm_cgroup {
	__u64 id;         /* 0: an empty slot (no cgroup has id 0) */
	const char *json; /* what follows "thread": ,"cgroup_id":N,"cgroup":"…"[,…] (ASCII) */
	__u64 len;
};

struct pm_cgroups {
	const struct pm_cgroup *slots; /* mask + 1 of them; a cgroup sits at id & mask or after */
	__u64 mask;
};

struct pm_batch {
	__u64 pos;     /* in: ring position to start at; out: just after the last record taken */
	__u64 records; /* out: records formatted (gap lines not counted) */
	__u64 out_len; /* out: bytes written */
	__u64 marked;  /* in: losses already marked (losses[LOSS_MARKED]); out: after this batch */
	__s64 offset_ns; /* in: CLOCK_REALTIME - CLOCK_MONOTONIC, added to ts_ns for "time" */
	__u64 gap_ns;    /* in: the CLOCK_MONOTONIC stamp whose time gap lines carry (now) */
	__u32 stop;    /* out: enum pm_stop */
	__u32 __pad;
};

/* The version of the lines' text: raised whenever what a line holds changes, so a
 * library built before is not used (pm_abi.json_format). 2: "time" after "type";
 * 3: DEL as \u007f; 4: exit lines say what the process cost; 5: what it ran
 * (filename, argv), and who it ran as (euid, egid, loginuid, sessionid; setid
 * execs). */
enum pm_json_format {
	PM_JSON_FORMAT = 5,
};

/* The program each process last ran: pid -> the text its exit line ends with
 * (,"filename":…,"argv":[…],"argv_truncated":…), kept from the records the
 * formatter writes and from those Python writes (pm_execs_set/fork/get/drop), as
 * procmon_ctl/process/last_execs.py describes and keeps it for the Python writer:
 * at most `cap` pids and `max_bytes` of text (each pid counted with its text, even
 * one shared with its parent); past either, the pid set longest ago goes. */
struct pm_execs;

/* The contract as this library was compiled: sizes, offsets and constants of
 * process_monitor.h and of this header. */
struct pm_abi {
	__u32 abi_size; /* sizeof(struct pm_abi) */
	__u32 batch_size;
	__u32 process_event_size;
	__u32 exec_event_size;
	__u32 comm_offset;
	__u32 data_offset;
	__u32 flags_offset;
	__u32 dropped_total_offset;
	__u32 event_fork;
	__u32 event_exec;
	__u32 event_exit;
	__u32 event_flag_thread;
	__u32 ringbuf_busy_bit;
	__u32 ringbuf_discard_bit;
	__u32 ringbuf_hdr_sz;
	__u32 cgroup_id_offset;
	__u32 ns_pid_offset;
	__u32 event_flag_pidns;
	__u32 cgroup_slot_size;
	__u32 cgroup_json_max;
	__u32 json_format;
	__u32 exit_event_size;
	__u32 event_flag_io;
	__u32 event_flag_setid;
	__u32 euid_offset;
};

void pm_abi_info(struct pm_abi *abi);
void pm_json_lines(const unsigned char *data, __u64 mask, const __u64 *producer_pos,
		   __u64 max_records, const struct pm_cgroups *cgroups, struct pm_execs *execs,
		   char *out, __u64 cap, struct pm_batch *b);
struct pm_execs *pm_execs_new(__u32 cap, __u64 max_bytes);
void pm_execs_free(struct pm_execs *t);
int pm_execs_set(struct pm_execs *t, __u32 pid, const char *text, __u64 len);
void pm_execs_fork(struct pm_execs *t, __u32 child, __u32 parent);
__s64 pm_execs_get(const struct pm_execs *t, __u32 pid, const char **text);
void pm_execs_drop(struct pm_execs *t, __u32 pid);
__u32 pm_execs_count(const struct pm_execs *t);
void *pm_ring_map(int fd, __u64 size);
int pm_ring_unmap(void *addr, __u64 size);
long pm_page_size(void);

#endif
