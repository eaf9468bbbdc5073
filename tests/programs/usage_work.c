// SPDX-License-Identifier: GPL-2.0-only
/* Processes of known cost, for comparing an exit record's usage with what
 * wait4() tells the parent and /proc/PID/io says just before the end.
 *
 *   usage_work spin MS MIB        one thread: touches MIB MiB, spins MS ms in user mode
 *   usage_work threads N MS       N threads spin MS ms each and end; then the leader does
 *   usage_work leader-first MS    the leader spins MS ms and ends first; its one thread
 *                                 spins MS ms, then ends the process
 *   usage_work group N MS         N threads spin until the process ends; the leader spins
 *                                 MS ms, then exit_group() ends them all at once
 *   usage_work copy PATH OUT      reads PATH whole, with O_DIRECT where its file system
 *                                 takes it, and writes it to OUT (through the page cache)
 *
 * Before the process ends, the thread that ends it writes "ready" on stdout and waits
 * for a line on stdin, so that the test can read /proc/PID/io meanwhile. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define MIB (1 << 20)

static long spin_ms;
static volatile unsigned long sink; /* what the spinning computes, so that it is done */

static long long thread_cpu_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Spins in user mode for `ms` ms of this thread's CPU time (the clock is read
 * every few million iterations: the system time it costs stays small). */
static void spin(long ms)
{
	long long end = thread_cpu_ns() + ms * 1000000LL;

	do {
		for (unsigned long i = 0; i < 2000000; i++)
			sink += i;
	} while (thread_cpu_ns() < end);
}

static void spin_forever(void)
{
	for (;;)
		sink++;
}

/* "ready", then wait for the test's go. */
static void hold(void)
{
	char line[16];

	fputs("ready\n", stdout);
	fflush(stdout);
	if (!fgets(line, sizeof(line), stdin))
		exit(2);
}

static void *spin_and_end(void *arg)
{
	(void)arg;
	spin(spin_ms);
	return NULL;
}

static void *spin_until_killed(void *arg)
{
	(void)arg;
	spin_forever();
	return NULL;
}

static void *end_after_leader(void *arg)
{
	(void)arg;
	spin(spin_ms);
	hold();
	syscall(SYS_exit_group, 0);
	return NULL;
}

static void start(pthread_t *t, void *(*fn)(void *))
{
	if (pthread_create(t, NULL, fn, NULL)) {
		perror("pthread_create");
		exit(1);
	}
}

static void copy(const char *path, const char *out)
{
	static char buf[MIB] __attribute__((aligned(4096)));
	int fd = open(path, O_RDONLY | O_DIRECT);
	int to = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	ssize_t n;

	if (fd < 0 && errno == EINVAL)
		fd = open(path, O_RDONLY);
	if (fd < 0 || to < 0) {
		perror("open");
		exit(1);
	}
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		if (write(to, buf, (size_t)n) != n) {
			perror("write");
			exit(1);
		}
	if (n < 0) {
		perror("read");
		exit(1);
	}
	close(fd);
	close(to);
}

int main(int argc, char **argv)
{
	pthread_t threads[64];
	int i, n;

	if (argc == 4 && !strcmp(argv[1], "spin")) {
		size_t size = (size_t)atol(argv[3]) * MIB;
		char *mem = malloc(size);

		if (!mem)
			return 1;
		memset(mem, 1, size);
		spin(atol(argv[2]));
		hold();
		return mem[size - 1] == 1 ? 0 : 1;
	}
	if (argc == 4 && (!strcmp(argv[1], "threads") || !strcmp(argv[1], "group"))) {
		int group = !strcmp(argv[1], "group");

		n = atoi(argv[2]);
		spin_ms = atol(argv[3]);
		if (n < 1 || n > 64)
			return 1;
		for (i = 0; i < n; i++)
			start(&threads[i], group ? spin_until_killed : spin_and_end);
		if (!group)
			for (i = 0; i < n; i++)
				pthread_join(threads[i], NULL);
		spin(spin_ms);
		hold();
		syscall(SYS_exit_group, 0);
	}
	if (argc == 3 && !strcmp(argv[1], "leader-first")) {
		spin_ms = atol(argv[2]);
		spin(spin_ms);
		start(&threads[0], end_after_leader);
		syscall(SYS_exit, 0); /* the leader only */
	}
	if (argc == 4 && !strcmp(argv[1], "copy")) {
		copy(argv[2], argv[3]);
		hold();
		return 0;
	}
	fprintf(stderr, "usage: see the comment at the top of usage_work.c\n");
	return 1;
}
