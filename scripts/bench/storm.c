/* storm: a bounded process, thread or exec storm for `make bench`.
 *
 *   storm fork   COUNT SECONDS   fork + _exit + waitpid, COUNT times
 *   storm thread COUNT SECONDS   pthread_create + pthread_join, COUNT times
 *   storm exec   COUNT SECONDS   fork + execve + waitpid, COUNT times: the child
 *                                execs this program again with EXEC_ARGC
 *                                arguments, the second being CHILD_MARK (so it
 *                                exits at once, before anything else) and the
 *                                third a token unique to that exec, "PID.SEQ"
 *   storm failed COUNT SECONDS   execve of a path that does not exist, with the
 *                                exec storm's arguments, COUNT times: each fails
 *                                (ENOENT) and returns, no process is made
 *
 * Stops after COUNT children or SECONDS, whichever comes first, then prints one
 * JSON object: its pid, how many it made and its CLOCK_MONOTONIC start and end;
 * in exec mode also "argv", the argument list each child was given, with
 * "{token}" in the token's place.
 * With `-w FD` it waits for one byte on FD before starting, so several storms
 * (and the bench's clock) start together; with `-o FILE` it writes the id of
 * every child or thread it made there, one per line (exec and failed: "PID TOKEN"),
 * so a tracer's output can be checked for exactly the workload's own ids, and
 * for an exec, for its whole argument list. */
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

#define CHILD_MARK "--storm-exec-child"
#define MISSING_PATH "/nonexistent/storm/failed-exec"
#define EXEC_ARGC 20
#define TOKEN_ARG 2

/* The exec'd child's arguments after the token: a compiler's command line,
 * ~250 bytes in all with the path and the token. */
static const char *const exec_tail[EXEC_ARGC - TOKEN_ARG - 1] = {
	"-O2", "-g", "-Wall", "-Wextra", "-fPIC", "-DSTORM_EXEC=1", "-DNDEBUG",
	"-I/usr/include/storm", "-I/usr/local/include/storm-bench", "-c", "src/alpha.c",
	"-o", "build/alpha.o", "--param=max-inline-insns-single=400", "-MMD", "-MF",
	"build/alpha.d",
};

static void put_json_string(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			putchar('\\');
		putchar(*s);
	}
	putchar('"');
}

static void *note_tid(void *arg)
{
	last_tid = gettid(); /* read by the creator after pthread_join */
	return arg;
}

static int usage(void)
{
	fprintf(stderr, "usage: storm [-w FD] [-o FILE] fork|thread|exec|failed COUNT SECONDS\n");
	return 2;
}

int main(int argc, char **argv)
{
	int gate = -1, threads = 0, execs = 0, failed = 0;
	long count, made = 0;
	double limit, start, end, deadline;
	const char *ids_path = NULL;
	pid_t *ids;
	char self[4096], token[64];
	char *child_argv[EXEC_ARGC + 1];

	/* An exec storm's child: gone before anything else runs. */
	if (argc > 1 && strcmp(argv[1], CHILD_MARK) == 0)
		_exit(0);
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
	if (strcmp(argv[1], "thread") == 0)
		threads = 1;
	else if (strcmp(argv[1], "exec") == 0)
		execs = 1;
	else if (strcmp(argv[1], "failed") == 0)
		execs = failed = 1;
	else if (strcmp(argv[1], "fork") != 0)
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

	if (execs) {
		ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);

		if (n <= 0 || n == (ssize_t)sizeof(self) - 1) {
			perror("readlink /proc/self/exe");
			return 1;
		}
		self[n] = '\0';
		/* Every argument in memory this process wrote (stack, heap), as a
		 * shell's are: fork copies the page-table entries of such pages, so
		 * a tracer reading argv at execve's entry finds them present.
		 * String literals would sit in the file-backed .rodata, which the
		 * child has not faulted in yet, and a BPF read there (no faults
		 * allowed) fails: a tracer would lose arguments because of how
		 * the workload was built, not because of the tracer. */
		child_argv[0] = self;
		child_argv[1] = strdup(CHILD_MARK);
		child_argv[TOKEN_ARG] = token;
		for (int i = TOKEN_ARG + 1; i < EXEC_ARGC; i++)
			child_argv[i] = strdup(exec_tail[i - TOKEN_ARG - 1]);
		child_argv[EXEC_ARGC] = NULL;
		for (int i = 0; i < EXEC_ARGC; i++) {
			if (!child_argv[i]) {
				perror("strdup");
				return 1;
			}
		}
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
		if (failed) {
			snprintf(token, sizeof(token), "%d.%ld", getpid(), made);
			execv(MISSING_PATH, child_argv);
			if (errno != ENOENT) {
				perror("storm: execve of a missing path");
				return 1;
			}
			ids[made] = getpid();
		} else if (threads) {
			pthread_t t;

			if (pthread_create(&t, NULL, note_tid, NULL) != 0) {
				perror("pthread_create");
				break;
			}
			pthread_join(t, NULL);
			ids[made] = last_tid;
		} else {
			pid_t pid;
			int status = 0;

			if (execs) /* the child's copy of token is the one it passes */
				snprintf(token, sizeof(token), "%d.%ld", getpid(), made);
			pid = fork();
			if (pid < 0) {
				perror("fork");
				break;
			}
			if (pid == 0) {
				if (execs) {
					execv(self, child_argv);
					_exit(127);
				}
				_exit(0);
			}
			ids[made] = pid;
			while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
				;
			if (execs && status != 0) {
				fprintf(stderr, "storm: exec of %s failed (status %d)\n", self,
					status);
				return 1;
			}
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
		for (long i = 0; i < made; i++) {
			if (execs)
				fprintf(f, "%d %d.%ld\n", ids[i], getpid(), i);
			else
				fprintf(f, "%d\n", ids[i]);
		}
		fclose(f);
	}
	printf("{\"pid\":%d,\"mode\":\"%s\",\"made\":%ld,\"start\":%.6f,\"end\":%.6f",
	       getpid(), argv[1], made, start, end);
	if (execs) {
		printf(",\"argv\":[");
		for (int i = 0; i < EXEC_ARGC; i++) {
			if (i)
				putchar(',');
			put_json_string(i == TOKEN_ARG ? "{token}" : child_argv[i]);
		}
		putchar(']');
	}
	printf("}\n");
	return 0;
}
