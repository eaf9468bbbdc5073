/* forkloop: a million short-lived processes, fast, for scripts/bench/long_run.py.
 *
 *   forkloop [-p FILE] [-e] COUNT
 *
 * Makes COUNT processes, one after the other: vfork, the child _exit(0)s at once,
 * the parent reaps it.  vfork, not fork: nothing to copy, so ~25,000 processes a
 * second on one core of this 2-CPU VM (fork + waitpid makes ~7,000, batches of
 * forks ~15,000 on both cores).  Each child is a process of its own (a fork, an
 * exit, no exec), as a tracer sees it.
 *
 * With -p FILE it keeps FILE up to date (every 1024 children, and at the end) with
 * one line, "PID MADE DONE", so a caller can see how far it got, also when it runs
 * under another program (`procmon-ctl run -- forkloop ...`).  With -e it then
 * waits for end of file on its stdin before it exits: the caller can look at the
 * reader while the run is still on.  Prints {"pid":...,"made":...,"seconds":...}. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
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

static void progress(int fd, long made, int done)
{
	char line[64];
	int n;

	if (fd < 0)
		return;
	/* Fixed width, written in place: a reader never sees a shorter, stale tail. */
	n = snprintf(line, sizeof(line), "%10d %12ld %d\n", getpid(), made, done);
	if (pwrite(fd, line, n, 0) != n)
		perror("forkloop: progress");
}

static int usage(void)
{
	fprintf(stderr, "usage: forkloop [-p FILE] [-e] COUNT\n");
	return 2;
}

int main(int argc, char **argv)
{
	const char *progress_path = NULL;
	int hold = 0, fd = -1, opt;
	long count, made = 0;
	double start;
	char *end;

	while ((opt = getopt(argc, argv, "p:e")) != -1) {
		if (opt == 'p')
			progress_path = optarg;
		else if (opt == 'e')
			hold = 1;
		else
			return usage();
	}
	if (optind != argc - 1)
		return usage();
	errno = 0;
	count = strtol(argv[optind], &end, 10);
	if (errno || *end || count <= 0)
		return usage();
	if (progress_path) {
		fd = open(progress_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (fd < 0) {
			perror(progress_path);
			return 1;
		}
	}
	progress(fd, 0, 0);
	start = now();
	while (made < count) {
		pid_t pid = vfork();

		if (pid == 0)
			_exit(0);
		if (pid < 0) {
			if (errno == EAGAIN || errno == EINTR)
				continue;
			perror("forkloop: vfork");
			break;
		}
		while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
			;
		made++;
		if ((made & 1023) == 0)
			progress(fd, made, 0);
	}
	progress(fd, made, 1);
	printf("{\"pid\":%d,\"made\":%ld,\"seconds\":%.3f}\n", getpid(), made, now() - start);
	fflush(stdout);
	if (hold) {
		char buf[256];

		for (;;) {
			ssize_t n = read(STDIN_FILENO, buf, sizeof(buf));

			if (n == 0 || (n < 0 && errno != EINTR))
				break;
		}
	}
	return made == count ? 0 : 1;
}
