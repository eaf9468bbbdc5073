// SPDX-License-Identifier: GPL-2.0-only
/* The hot path of `procmon-ctl events --json`: records in the mapped ring buffer
 * to JSON lines, with no Python object per record.
 *
 * In a thread storm the CPython reader spent most of its ~1.7 us per record
 * building the line's string; here it is a few dozen nanoseconds.  The text is
 * byte for byte what procmon_ctl/decode.py writes (tests/test_json_native.py
 * checks it), and the record layout is bpf/process_monitor.h, included as is.
 * Records this code would have to think about (text that is not plain ASCII, a
 * failed exec, an unknown type) are handed back to the Python formatter, one at
 * a time. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "json_lines.h"

/* Longest line but its cgroup's fragment: an exec record whose every byte of
 * text needs \u00XX (an empty argument, `"",` for its one NUL, needs less), or an
 * exit record with the same text after its usage, plus its gap line.  The
 * fragment (up to PM_CGROUP_JSON_MAX) is added per record, so that a long cgroup
 * path costs the room of its own length only. */
#define PM_MAX_LINE (1152 + 6 * (MAX_FILENAME_LEN + TASK_COMM_LEN + ARGV_MAX_BYTES))

static char *put_str(char *p, const char *s, size_t n)
{
	memcpy(p, s, n);
	return p + n;
}

#define PUT_LIT(p, lit) put_str((p), (lit), sizeof(lit) - 1)

static char *put_u64(char *p, __u64 v)
{
	char tmp[20];
	int n = 0;

	do {
		tmp[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	while (n)
		*p++ = tmp[--n];
	return p;
}

/* ,"key":N */
#define PUT_FIELD(p, key, v) put_u64(PUT_LIT((p), key), (v))

#define NSEC_PER_SEC 1000000000LL
#define SEC_PER_DAY 86400

/* What "time" needs of a batch: the offset to Unix time, and the text of the
 * last second written (a storm's records share their second). */
struct pm_clock {
	int64_t offset_sec; /* the offset as whole seconds (floor) and ns in [0, 1e9): */
	int64_t offset_ns;  /* a stamp of any u64 value adds without overflow */
	int64_t sec;
	char text[19]; /* YYYY-MM-DDTHH:MM:SS */
};

static struct pm_clock clock_of(int64_t offset_ns)
{
	struct pm_clock c = { offset_ns / NSEC_PER_SEC, offset_ns % NSEC_PER_SEC, INT64_MIN, "" };

	if (c.offset_ns < 0) {
		c.offset_ns += NSEC_PER_SEC;
		c.offset_sec--;
	}
	return c;
}

static void put_2(char *p, unsigned v)
{
	p[0] = (char)('0' + v / 10);
	p[1] = (char)('0' + v % 10);
}

/* Unix seconds as YYYY-MM-DDTHH:MM:SS, UTC, in the proleptic Gregorian calendar
 * (what Python's time.gmtime gives), with no time zone or locale involved.  Days
 * are counted from 0000-03-01 in eras of 400 years, so that the leap day is the
 * last day of its year and every era has the same 146097 days. */
static void civil_text(char *out, int64_t sec)
{
	int64_t days = sec / SEC_PER_DAY, rest = sec % SEC_PER_DAY;
	int64_t era, year;
	unsigned day_of_era, year_of_era, day_of_year, month5, month, mday;

	if (rest < 0) {
		rest += SEC_PER_DAY;
		days--;
	}
	days += 719468; /* days from 0000-03-01 to 1970-01-01 */
	era = (days >= 0 ? days : days - 146096) / 146097;
	day_of_era = (unsigned)(days - era * 146097);
	year_of_era =
		(day_of_era - day_of_era / 1460 + day_of_era / 36524 - day_of_era / 146096) / 365;
	day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
	month5 = (5 * day_of_year + 2) / 153; /* 0 is March */
	mday = day_of_year - (153 * month5 + 2) / 5 + 1;
	month = month5 < 10 ? month5 + 3 : month5 - 9;
	year = (int64_t)year_of_era + era * 400 + (month <= 2);
	put_2(out, (unsigned)(year / 100 % 100));
	put_2(out + 2, (unsigned)(year % 100));
	out[4] = '-';
	put_2(out + 5, month);
	out[7] = '-';
	put_2(out + 8, mday);
	out[10] = 'T';
	put_2(out + 11, (unsigned)(rest / 3600));
	out[13] = ':';
	put_2(out + 14, (unsigned)(rest / 60 % 60));
	out[16] = ':';
	put_2(out + 17, (unsigned)(rest % 60));
}

/* ,"time":"2026-11-29T22:15:01.123456Z": the kernel stamp `ts` (CLOCK_MONOTONIC)
 * as wall-clock time, microseconds truncated (clock.rfc3339_utc). */
static char *put_time(char *p, struct pm_clock *c, __u64 ts)
{
	int64_t sec = (int64_t)(ts / NSEC_PER_SEC) + c->offset_sec;
	int64_t ns = (int64_t)(ts % NSEC_PER_SEC) + c->offset_ns;
	unsigned us, i;

	if (ns >= NSEC_PER_SEC) {
		ns -= NSEC_PER_SEC;
		sec++;
	}
	if (sec != c->sec) {
		civil_text(c->text, sec);
		c->sec = sec;
	}
	p = PUT_LIT(p, ",\"time\":\"");
	p = put_str(p, c->text, sizeof(c->text));
	*p++ = '.';
	us = (unsigned)(ns / 1000);
	for (i = 6; i--; us /= 10)
		p[i] = (char)('0' + us % 10);
	return PUT_LIT(p + 6, "Z\"");
}

static char *put_s32(char *p, __s32 v)
{
	if (v < 0) {
		*p++ = '-';
		return put_u64(p, (__u64)(-(int64_t)v));
	}
	return put_u64(p, (__u64)v);
}

/* `n` bytes (or fewer, up to a NUL) as the JSON string of decode.text(): a
 * backslash doubled, then escaped the way decode.json_string does (Python's
 * json.encoder.encode_basestring, and DEL as \u007f); NULL if they hold a byte
 * >= 0x80 (the Python side decodes those, keeping invalid UTF-8 visible, and
 * escapes the C1 and bidi controls and U+2028/U+2029 among them). */
static char *put_json_str(char *p, const char *s, size_t max)
{
	static const char hex[] = "0123456789abcdef";
	size_t i;

	*p++ = '"';
	for (i = 0; i < max && s[i]; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c >= 0x80)
			return NULL;
		if (c >= 0x20 && c != '"' && c != '\\' && c != 0x7f) {
			*p++ = (char)c;
			continue;
		}
		*p++ = '\\';
		switch (c) {
		case '"': *p++ = '"'; break;
		case '\\': p = PUT_LIT(p, "\\\\\\"); break; /* text() made it two */
		case '\n': *p++ = 'n'; break;
		case '\r': *p++ = 'r'; break;
		case '\t': *p++ = 't'; break;
		case '\b': *p++ = 'b'; break;
		case '\f': *p++ = 'f'; break;
		default:
			p = PUT_LIT(p, "u00");
			*p++ = hex[c >> 4];
			*p++ = hex[c & 0xf];
		}
	}
	*p++ = '"';
	return p;
}

/* An exec record's fields from "filename" on; NULL if the caller must format it.
 * `*what_ran` is set to where "argc" starts: the text before it, from the comma
 * before "filename", is what its process's exit line will end with. */
static char *put_exec(char *p, const struct exec_event *x, __u32 len, char **what_ran)
{
	const char *data = x->data, *arg, *end;

	if (len < sizeof(*x) || x->filename_len >= MAX_FILENAME_LEN || x->argv_len > ARGV_MAX_BYTES ||
	    len - sizeof(*x) < (__u64)x->filename_len + x->argv_len ||
	    memchr(data, 0, x->filename_len))
		return NULL;
	p = PUT_LIT(p, ",\"filename\":");
	p = put_json_str(p, data, x->filename_len);
	if (!p)
		return NULL;
	p = PUT_LIT(p, ",\"argv\":[");
	arg = data + x->filename_len;
	end = arg + x->argv_len;
	while (arg < end) {
		const char *nul = memchr(arg, 0, (size_t)(end - arg));
		size_t n = nul ? (size_t)(nul - arg) : (size_t)(end - arg);

		if (arg != data + x->filename_len)
			*p++ = ',';
		p = put_json_str(p, arg, n);
		if (!p)
			return NULL;
		arg += n + 1; /* past its NUL (or past the end: a cut last argument) */
	}
	if (x->base.flags & EVENT_FLAG_ARGV_TRUNCATED)
		p = PUT_LIT(p, "],\"argv_truncated\":true");
	else
		p = PUT_LIT(p, "],\"argv_truncated\":false");
	*what_ran = p;
	p = PUT_FIELD(p, ",\"argc\":", x->argc);
	if (x->base.flags & EVENT_FLAG_SETID) {
		p = PUT_LIT(p, ",\"setid\":true");
		p = PUT_FIELD(p, ",\"prev_euid\":", x->prev_euid);
		p = PUT_FIELD(p, ",\"prev_egid\":", x->prev_egid);
	}
	if (x->cap_gained)
		p = PUT_FIELD(p, ",\"cap_gained\":", x->cap_gained);
	return p;
}

/* decode.cpu_split(): the exact run time split in the ratio of the sampled user
 * and system times, as getrusage() reports them (the kernel's cputime_adjust()). */
static void cpu_split(__u64 utime, __u64 stime, __u64 runtime, __u64 *user, __u64 *system)
{
	if (!stime) {
		*user = runtime;
		*system = 0;
	} else if (!utime) {
		*user = 0;
		*system = runtime;
	} else {
		*system = (__u64)((unsigned __int128)stime * runtime / ((unsigned __int128)stime + utime));
		*user = runtime - *system;
	}
}

/* An exit record's usage, after "duration_ns" (json_lines.usage_json). */
static char *put_usage(char *p, const struct exit_event *x, __u64 page_kib)
{
	__u64 user, system;

	cpu_split(x->utime_ns, x->stime_ns, x->runtime_ns, &user, &system);
	p = PUT_FIELD(p, ",\"cpu_user_ns\":", user);
	p = PUT_FIELD(p, ",\"cpu_system_ns\":", system);
	p = PUT_FIELD(p, ",\"max_rss_kib\":", x->maxrss_pages * page_kib);
	p = PUT_FIELD(p, ",\"minor_faults\":", x->min_flt);
	p = PUT_FIELD(p, ",\"major_faults\":", x->maj_flt);
	p = PUT_FIELD(p, ",\"voluntary_switches\":", x->nvcsw);
	p = PUT_FIELD(p, ",\"involuntary_switches\":", x->nivcsw);
	if (x->base.flags & EVENT_FLAG_IO) {
		p = PUT_FIELD(p, ",\"read_bytes\":", x->read_bytes);
		p = PUT_FIELD(p, ",\"write_bytes\":", x->write_bytes);
	}
	return p;
}

static const struct pm_cgroup *find_cgroup(const struct pm_cgroups *t, __u64 id)
{
	__u64 i, slot;

	for (i = 0; i <= t->mask; i++) {
		slot = (id + i) & t->mask;
		if (t->slots[slot].id == id)
			return &t->slots[slot];
		if (!t->slots[slot].id)
			return NULL;
	}
	return NULL;
}

/* The table of pm_execs_*: entries in a pool of `cap`, chained from buckets by
 * pid, and linked oldest to newest (the order of eviction); indexes are 1-based,
 * 0 is none.  A text is shared by a process and the children that forked from
 * it without exec'ing, freed with its last entry. */
struct pm_exec_text {
	__u64 refs;
	__u64 len;
	char text[];
};

struct pm_exec_entry {
	__u32 pid;
	__u32 next;  /* in its bucket's chain; in the free list */
	__u32 older; /* toward the oldest */
	__u32 newer;
	struct pm_exec_text *text;
};

struct pm_execs {
	__u32 cap, count;
	__u32 mask; /* buckets - 1 */
	__u32 free, oldest, newest;
	__u64 max_bytes, bytes;
	__u32 *buckets;
	struct pm_exec_entry *entries; /* entries[i - 1] is entry i */
};

/* A pid's own low bits: a storm's pids come in order, and neighbours then share
 * a cache line of buckets.  A scattering hash put a cache miss on every record
 * (a third of put_exec_text's time was that one load). */
static __u32 bucket_of(const struct pm_execs *t, __u32 pid)
{
	return pid & t->mask;
}

static struct pm_exec_entry *entry(const struct pm_execs *t, __u32 i)
{
	return &t->entries[i - 1];
}

static __u32 find_exec(const struct pm_execs *t, __u32 pid)
{
	__u32 i = t->buckets[bucket_of(t, pid)];

	while (i && entry(t, i)->pid != pid)
		i = entry(t, i)->next;
	return i;
}

static void release_text(struct pm_exec_text *text)
{
	if (!--text->refs)
		free(text);
}

static void remove_exec(struct pm_execs *t, __u32 i)
{
	struct pm_exec_entry *x = entry(t, i);
	__u32 *link = &t->buckets[bucket_of(t, x->pid)];

	while (*link != i)
		link = &entry(t, *link)->next;
	*link = x->next;
	if (x->older)
		entry(t, x->older)->newer = x->newer;
	else
		t->oldest = x->newer;
	if (x->newer)
		entry(t, x->newer)->older = x->older;
	else
		t->newest = x->older;
	t->bytes -= x->text->len;
	release_text(x->text);
	x->text = NULL;
	x->next = t->free;
	t->free = i;
	t->count--;
}

/* `pid` ran `text` (a reference of the caller's, now the entry's). */
static void put_exec_text(struct pm_execs *t, __u32 pid, struct pm_exec_text *text)
{
	__u32 i = find_exec(t, pid), b;
	struct pm_exec_entry *x;

	if (i)
		remove_exec(t, i);
	if (!t->free)
		remove_exec(t, t->oldest);
	i = t->free;
	x = entry(t, i);
	t->free = x->next;
	b = bucket_of(t, pid);
	*x = (struct pm_exec_entry){ pid, t->buckets[b], t->newest, 0, text };
	t->buckets[b] = i;
	if (t->newest)
		entry(t, t->newest)->newer = i;
	else
		t->oldest = i;
	t->newest = i;
	t->count++;
	t->bytes += text->len;
	while (t->bytes > t->max_bytes)
		remove_exec(t, t->oldest);
}

struct pm_execs *pm_execs_new(__u32 cap, __u64 max_bytes)
{
	struct pm_execs *t = calloc(1, sizeof(*t));
	__u32 buckets = 1, i;

	if (!t || !cap)
		goto fail;
	while (buckets < cap)
		buckets <<= 1;
	buckets <<= 1;
	t->cap = cap;
	t->mask = buckets - 1;
	t->max_bytes = max_bytes;
	t->buckets = calloc(buckets, sizeof(*t->buckets));
	t->entries = calloc(cap, sizeof(*t->entries));
	if (!t->buckets || !t->entries)
		goto fail;
	for (i = 1; i < cap; i++)
		t->entries[i - 1].next = i + 1;
	t->free = 1;
	return t;
fail:
	if (t) {
		free(t->buckets);
		free(t->entries);
		free(t);
	}
	return NULL;
}

void pm_execs_free(struct pm_execs *t)
{
	if (!t)
		return;
	while (t->oldest)
		remove_exec(t, t->oldest);
	free(t->buckets);
	free(t->entries);
	free(t);
}

/* `pid` exec'd: `text` (len bytes) ends its exit line.  -1: no memory (its
 * entry is gone, as a process the table never saw). */
int pm_execs_set(struct pm_execs *t, __u32 pid, const char *text, __u64 len)
{
	struct pm_exec_text *copy = malloc(sizeof(*copy) + len);

	if (!copy) {
		pm_execs_drop(t, pid);
		return -1;
	}
	copy->refs = 1;
	copy->len = len;
	memcpy(copy->text, text, len);
	put_exec_text(t, pid, copy);
	return 0;
}

/* `parent` forked the process `child`, which runs its parent's image until it execs. */
void pm_execs_fork(struct pm_execs *t, __u32 child, __u32 parent)
{
	__u32 i = find_exec(t, parent);
	struct pm_exec_text *text;

	if (!i) {
		pm_execs_drop(t, child);
		return;
	}
	text = entry(t, i)->text;
	text->refs++;
	put_exec_text(t, child, text);
}

/* The text of `pid`'s entry and its length; -1 when it has none. */
__s64 pm_execs_get(const struct pm_execs *t, __u32 pid, const char **text)
{
	__u32 i = find_exec(t, pid);

	if (!i)
		return -1;
	*text = entry(t, i)->text->text;
	return (__s64)entry(t, i)->text->len;
}

void pm_execs_drop(struct pm_execs *t, __u32 pid)
{
	__u32 i = find_exec(t, pid);

	if (i)
		remove_exec(t, i);
}

__u32 pm_execs_count(const struct pm_execs *t)
{
	return t->count;
}

/* The end of an exit line: what its process ran, when the table knows (its entry
 * then goes: the process is gone). */
static char *put_what_ran(char *p, struct pm_execs *t, __u32 pid)
{
	__u32 i = find_exec(t, pid);

	if (!i)
		return p;
	p = put_str(p, entry(t, i)->text->text, entry(t, i)->text->len);
	remove_exec(t, i);
	return p;
}

/* One record's line, `cg` its cgroup's; NULL if the caller must format it. */
static char *put_record(char *p, const struct process_event *e, __u32 len,
			const struct pm_cgroup *cg, struct pm_clock *clock, __u64 page_kib,
			struct pm_execs *execs)
{
	char *what_ran = NULL, *ran_from = NULL;

	if (e->type == EVENT_EXIT && len < sizeof(struct exit_event))
		return NULL;
	switch (e->type) {
	case EVENT_FORK: p = PUT_LIT(p, "{\"type\":\"fork\""); break;
	case EVENT_EXIT: p = PUT_LIT(p, "{\"type\":\"exit\""); break;
	case EVENT_EXEC: p = PUT_LIT(p, "{\"type\":\"exec\""); break;
	default:
		return NULL;
	}
	p = put_time(p, clock, e->ts_ns);
	p = PUT_FIELD(p, ",\"ts_ns\":", e->ts_ns);
	p = PUT_FIELD(p, ",\"pid\":", e->pid);
	p = PUT_FIELD(p, ",\"tgid\":", e->tgid);
	p = PUT_FIELD(p, ",\"ppid\":", e->ppid);
	p = PUT_FIELD(p, ",\"uid\":", e->uid);
	p = PUT_FIELD(p, ",\"euid\":", e->euid);
	p = PUT_FIELD(p, ",\"egid\":", e->egid);
	if (e->loginuid != AUDIT_ID_UNSET)
		p = PUT_FIELD(p, ",\"loginuid\":", e->loginuid);
	if (e->sessionid != AUDIT_ID_UNSET)
		p = PUT_FIELD(p, ",\"sessionid\":", e->sessionid);
	p = PUT_LIT(p, ",\"comm\":");
	p = put_json_str(p, e->comm, TASK_COMM_LEN);
	if (!p)
		return NULL;
	if (e->flags & EVENT_FLAG_THREAD)
		p = PUT_LIT(p, ",\"thread\":true");
	else
		p = PUT_LIT(p, ",\"thread\":false");
	p = put_str(p, cg->json, cg->len);
	if (e->flags & EVENT_FLAG_PIDNS) {
		p = PUT_FIELD(p, ",\"ns_pid\":", e->ns_pid);
		p = PUT_FIELD(p, ",\"ns_ppid\":", e->ns_ppid);
	}
	if (e->type == EVENT_EXIT) {
		p = put_s32(PUT_LIT(p, ",\"exit_code\":"), e->exit_code);
		p = PUT_FIELD(p, ",\"exit_signal\":", e->exit_signal);
		p = PUT_FIELD(p, ",\"duration_ns\":", e->duration_ns);
		p = put_usage(p, (const struct exit_event *)e, page_kib);
		if (!(e->flags & EVENT_FLAG_THREAD))
			p = put_what_ran(p, execs, e->tgid);
	} else if (e->type == EVENT_EXEC) {
		ran_from = p;
		p = put_exec(p, (const struct exec_event *)e, len, &what_ran);
		if (!p)
			return NULL;
		pm_execs_set(execs, e->tgid, ran_from, (__u64)(what_ran - ran_from));
	} else if (!(e->flags & EVENT_FLAG_THREAD)) {
		pm_execs_fork(execs, e->tgid, e->ppid);
	}
	p = PUT_LIT(p, "}\n");
	return p;
}

/* Format the submitted records from b->pos on.  `data` is the ring's data area,
 * mapped twice in a row (so a record that wraps reads straight), `mask` its
 * size - 1, `producer_pos` the kernel's producer position.  Nothing is consumed:
 * the caller writes the text, then moves the consumer position to b->pos. */
void pm_json_lines(const unsigned char *data, __u64 mask, const __u64 *producer_pos,
		   __u64 max_records, const struct pm_cgroups *cgroups, struct pm_execs *execs,
		   char *out, __u64 cap, struct pm_batch *b)
{
	__u64 pos = b->pos, marked = b->marked;
	__u64 prod = __atomic_load_n(producer_pos, __ATOMIC_ACQUIRE);
	char *p = out, *end = out + cap;
	struct pm_clock clock = clock_of(b->offset_ns);
	__u64 page_kib = (__u64)sysconf(_SC_PAGESIZE) / 1024;

	b->records = 0;
	b->stop = PM_STOP_CAUGHT_UP;
	for (;;) {
		const unsigned char *hdr;
		const struct process_event *e;
		const struct pm_cgroup *cg;
		__u32 len;
		char *line;

		if (pos >= prod) {
			prod = __atomic_load_n(producer_pos, __ATOMIC_ACQUIRE);
			if (pos >= prod)
				break;
		}
		if (b->records >= max_records) {
			b->stop = PM_STOP_LIMIT;
			break;
		}
		if ((__u64)(end - p) < PM_MAX_LINE) {
			b->stop = PM_STOP_FULL;
			break;
		}
		hdr = data + (pos & mask);
		len = __atomic_load_n((const __u32 *)hdr, __ATOMIC_ACQUIRE);
		if (len & RINGBUF_BUSY_BIT)
			break; /* reserved, not yet submitted: what follows waits for it */
		if (len & RINGBUF_DISCARD_BIT) {
			pos += RINGBUF_FOOTPRINT(len & ~RINGBUF_DISCARD_BIT);
			continue;
		}
		e = (const struct process_event *)(hdr + RINGBUF_HDR_SZ);
		if (len < sizeof(*e)) {
			b->stop = PM_STOP_FOREIGN;
			break;
		}
		cg = find_cgroup(cgroups, e->cgroup_id);
		if (!cg) {
			b->stop = PM_STOP_FOREIGN;
			break;
		}
		if ((__u64)(end - p) - PM_MAX_LINE < cg->len) {
			b->stop = PM_STOP_FULL;
			break;
		}
		line = p;
		if (e->dropped_total > marked) {
			line = put_time(PUT_LIT(line, "{\"type\":\"gap\""), &clock, b->gap_ns);
			line = PUT_FIELD(line, ",\"dropped\":", e->dropped_total - marked);
			line = PUT_LIT(line, "}\n");
		}
		line = put_record(line, e, len, cg, &clock, page_kib, execs);
		if (!line) {
			b->stop = PM_STOP_FOREIGN;
			break;
		}
		if (e->dropped_total > marked)
			marked = e->dropped_total;
		p = line;
		pos += RINGBUF_FOOTPRINT(len);
		b->records++;
	}
	b->pos = pos;
	b->marked = marked;
	b->out_len = (__u64)(p - out);
}

void pm_abi_info(struct pm_abi *abi)
{
	*abi = (struct pm_abi){
		.abi_size = sizeof(struct pm_abi),
		.batch_size = sizeof(struct pm_batch),
		.process_event_size = sizeof(struct process_event),
		.exec_event_size = sizeof(struct exec_event),
		.comm_offset = offsetof(struct process_event, comm),
		.data_offset = offsetof(struct exec_event, data),
		.flags_offset = offsetof(struct process_event, flags),
		.dropped_total_offset = offsetof(struct process_event, dropped_total),
		.event_fork = EVENT_FORK,
		.event_exec = EVENT_EXEC,
		.event_exit = EVENT_EXIT,
		.event_flag_thread = EVENT_FLAG_THREAD,
		.ringbuf_busy_bit = RINGBUF_BUSY_BIT,
		.ringbuf_discard_bit = RINGBUF_DISCARD_BIT,
		.ringbuf_hdr_sz = RINGBUF_HDR_SZ,
		.cgroup_id_offset = offsetof(struct process_event, cgroup_id),
		.ns_pid_offset = offsetof(struct process_event, ns_pid),
		.event_flag_pidns = EVENT_FLAG_PIDNS,
		.cgroup_slot_size = sizeof(struct pm_cgroup),
		.cgroup_json_max = PM_CGROUP_JSON_MAX,
		.json_format = PM_JSON_FORMAT,
		.exit_event_size = sizeof(struct exit_event),
		.event_flag_io = EVENT_FLAG_IO,
		.event_flag_setid = EVENT_FLAG_SETID,
		.euid_offset = offsetof(struct process_event, euid),
	};
}

/* The ring's producer page and data area (twice), read-only, as the kernel
 * lays them out after the consumer page.  Returns MAP_FAILED with errno set. */
void *pm_ring_map(int fd, __u64 size)
{
	long page = sysconf(_SC_PAGESIZE);

	return mmap(NULL, (size_t)page + 2 * size, PROT_READ, MAP_SHARED, fd, page);
}

int pm_ring_unmap(void *addr, __u64 size)
{
	return munmap(addr, (size_t)sysconf(_SC_PAGESIZE) + 2 * size);
}

long pm_page_size(void)
{
	return sysconf(_SC_PAGESIZE);
}
