// SPDX-License-Identifier: GPL-2.0-only
/* Multi-threaded processes that end in the ways that make "which thread is the
 * process's exit?" hard.  The test compares procmon-ctl's one exit record per
 * process with what waitpid() told the parent.
 *
 *   exit_modes group-exit N CODE   N threads; a non-leader thread calls _exit(CODE)
 *   exit_modes leader-first CODE   the leader thread exits first; the last thread
 *                                  ends the process with exit(2) status CODE
 *   exit_modes all-exit N CODE     N threads call exit_group(CODE) at the same moment
 *   exit_modes killed N            N threads, then SIGKILL to the whole process
 *
 * Each mode first sleeps LIFETIME_MS in the leader, so the process's lifetime is
 * known to be longer than any of its threads'. */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define LIFETIME_MS 200

static pthread_barrier_t barrier;
static int code;

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

static void *wait_forever(void *arg)
{
	(void)arg;
	pthread_barrier_wait(&barrier);
	for (;;)
		pause();
	return NULL;
}

static void *exit_group_now(void *arg)
{
	(void)arg;
	pthread_barrier_wait(&barrier);
	syscall(SYS_exit_group, code);
	return NULL;
}

static void *exit_last(void *arg)
{
	(void)arg;
	sleep_ms(50); /* the leader is gone by now */
	syscall(SYS_exit, code); /* this thread only: it is the last one */
	return NULL;
}

static void start(int n, void *(*fn)(void *))
{
	pthread_t t;

	for (int i = 0; i < n; i++) {
		if (pthread_create(&t, NULL, fn, NULL)) {
			perror("pthread_create");
			exit(100);
		}
	}
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "";
	int n = argc > 2 ? atoi(argv[2]) : 0;

	code = argc > 3 ? atoi(argv[3]) : 0;
	sleep_ms(LIFETIME_MS);
	if (!strcmp(mode, "group-exit") && n > 0) {
		pthread_barrier_init(&barrier, NULL, n + 1);
		start(n - 1, wait_forever);
		start(1, exit_group_now);
		pthread_barrier_wait(&barrier);
		for (;;)
			pause();
	} else if (!strcmp(mode, "leader-first") && argc == 3) {
		code = n;
		start(1, exit_last);
		syscall(SYS_exit, 0); /* the leader thread alone */
	} else if (!strcmp(mode, "all-exit") && n > 0) {
		pthread_barrier_init(&barrier, NULL, n + 1);
		start(n, exit_group_now);
		pthread_barrier_wait(&barrier);
		syscall(SYS_exit_group, code);
	} else if (!strcmp(mode, "killed") && n > 0) {
		pthread_barrier_init(&barrier, NULL, n + 1);
		start(n, wait_forever);
		pthread_barrier_wait(&barrier);
		kill(getpid(), SIGKILL);
	}
	fprintf(stderr, "usage: exit_modes group-exit|all-exit N CODE | leader-first CODE | killed N\n");
	return 2;
}
