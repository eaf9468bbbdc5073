/* storm: a bounded process or thread storm for `make bench`.
 *
 *   storm fork   COUNT SECONDS   fork + _exit + waitpid, COUNT times
 *   storm thread COUNT SECONDS   pthread_create + pthread_join, COUNT times
 *
 * Stops after COUNT children or SECONDS, whichever comes first, then prints one
 * JSON object: its pid, how many it made and its CLOCK_MONOTONIC start and end.
 * With `-w FD` it waits for one byte on FD before starting, so several storms
 * (and the bench's clock) start together; with `-o FILE` it writes the id of
 * every child or thread it made there, one per line, so a tracer's output can
 * be checked for exactly the workload's own ids. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static pid_t last_tid;

static void *note_tid(void *arg)
{
	last_tid = gettid(); /* read by the creator after pthread_join */
	return arg;
}

static int usage(void)
{
	fprintf(stderr, "usage: storm [-w FD] [-o FILE] fork|thread COUNT SECONDS\n");
	return 2;
}

int main(int argc, char **argv)
{
	int gate = -1, threads;
	long count, made = 0;
	double limit, start, end, deadline;
	const char *ids_path = NULL;
	pid_t *ids;

	while (argc > 2 && argv[1][0] == '-') {
		if (strcmp(argv[1], "-w") == 0)
			gate = atoi(argv[2]);
		else if (strcmp(argv[1], "-o") == 0)
			ids_path = argv[2];
		else
			return usage();
		argv += 2;
		argc -= 2;
	}
	if (argc != 4)
		return usage();
	if (strcmp(argv[1], "fork") == 0)
		threads = 0;
	else if (strcmp(argv[1], "thread") == 0)
		threads = 1;
	else
		return usage();
	count = atol(argv[2]);
	limit = atof(argv[3]);
	if (count <= 0 || limit <= 0)
		return usage();
	ids = calloc(count, sizeof(*ids));
	if (!ids) {
		perror("calloc");
		return 1;
	}

	if (gate >= 0) {
		char c;

		while (read(gate, &c, 1) < 0 && errno == EINTR)
			;
		close(gate);
	}
	start = now();
	deadline = start + limit;
	while (made < count) {
		if (threads) {
			pthread_t t;

			if (pthread_create(&t, NULL, note_tid, NULL) != 0) {
				perror("pthread_create");
				break;
			}
			pthread_join(t, NULL);
			ids[made] = last_tid;
		} else {
			pid_t pid = fork();

			if (pid < 0) {
				perror("fork");
				break;
			}
			if (pid == 0)
				_exit(0);
			ids[made] = pid;
			while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
				;
		}
		made++;
		/* Check the clock every 256 children: cheap next to a fork. */
		if ((made & 255) == 0 && now() >= deadline)
			break;
	}
	end = now();
	if (ids_path) {
		FILE *f = fopen(ids_path, "w");

		if (!f) {
			perror(ids_path);
			return 1;
		}
		for (long i = 0; i < made; i++)
			fprintf(f, "%d\n", ids[i]);
		fclose(f);
	}
	printf("{\"pid\":%d,\"mode\":\"%s\",\"made\":%ld,\"start\":%.6f,\"end\":%.6f}\n",
	       getpid(), argv[1], made, start, end);
	return 0;
}
