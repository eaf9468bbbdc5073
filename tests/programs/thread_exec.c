// SPDX-License-Identifier: GPL-2.0-only
/* Execs that end without their thread returning from execve as it entered it:
 * what a tracker of execs in progress keyed by thread id must still see end.
 *
 *   thread_exec leak PROGRAM N FAILS TOKEN
 *       N times: fork a child whose second thread (not its leader) execs PROGRAM
 *       (de_thread() gives it the leader's id), and wait for it; then FAILS execs
 *       of a path that does not exist, each with argv ("thread_exec", TOKEN,
 *       "<i>"), by this process.  Prints "<pid> <tid>" for each child (its
 *       process and the thread that exec'd), then "done".
 *
 *   thread_exec blocked HOW
 *       A second thread execs /bin/true with an argument on a page registered
 *       with userfaultfd and never filled: it blocks inside execve, reading its
 *       arguments.  Once its page fault is seen the program prints
 *       "blocked <pid> <tid>", and the thread dies inside execve:
 *         exit     the leader calls exit_group(0) once a line (or EOF) is read
 *                  from stdin
 *         exec     the leader execs /bin/true (its de_thread() kills the thread),
 *                  likewise once stdin says so
 *         kill     the program waits for a SIGKILL from outside */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static const char *target = "/bin/true";
static volatile pid_t exec_tid;
static int report_fd = -1; /* leak: where the exec'ing thread says who it is */

static void die(const char *what)
{
	perror(what);
	exit(2);
}

static void *exec_target(void *arg)
{
	char *argv[] = { "true", arg, NULL };
	char line[32];
	int n;

	exec_tid = syscall(SYS_gettid);
	if (report_fd >= 0) {
		n = snprintf(line, sizeof(line), "%d %d\n", getpid(), exec_tid);
		if (write(report_fd, line, n) != n)
			die("write");
	}
	execve(target, argv, environ);
	die("execve");
	return NULL;
}

/* A child whose non-leader thread execs: the leader waits, and de_thread() in
 * the thread's exec ends it. */
static void leak_one(void)
{
	pid_t pid = fork();
	int status;

	if (pid < 0)
		die("fork");
	if (pid == 0) {
		pthread_t t;

		if (pthread_create(&t, NULL, exec_target, NULL))
			_exit(3);
		for (;;)
			pause();
	}
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status))
		die("the child's thread did not exec");
}

static int leak(int n, int fails, const char *token)
{
	char index[16];
	char *argv[] = { "thread_exec", (char *)token, index, NULL };
	int i;

	report_fd = STDOUT_FILENO;
	for (i = 0; i < n; i++)
		leak_one();
	for (i = 0; i < fails; i++) {
		snprintf(index, sizeof(index), "%d", i);
		execve("/nonexistent/procmon-test/thread_exec", argv, environ);
		if (errno != ENOENT)
			die("execve of a missing path");
	}
	if (write(STDOUT_FILENO, "done\n", 5) != 5)
		die("write");
	return 0;
}

static int blocked(const char *how)
{
	struct uffdio_api api = { .api = UFFD_API };
	struct uffdio_register reg = {};
	struct uffd_msg msg;
	struct pollfd pfd;
	long page = sysconf(_SC_PAGESIZE);
	pthread_t t;
	char *area;
	int uffd;

	setvbuf(stdout, NULL, _IONBF, 0);
	uffd = syscall(SYS_userfaultfd, O_CLOEXEC);
	if (uffd < 0)
		die("userfaultfd");
	if (ioctl(uffd, UFFDIO_API, &api))
		die("UFFDIO_API");
	area = mmap(NULL, page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (area == MAP_FAILED)
		die("mmap");
	reg.range.start = (unsigned long)area;
	reg.range.len = page;
	reg.mode = UFFDIO_REGISTER_MODE_MISSING;
	if (ioctl(uffd, UFFDIO_REGISTER, &reg))
		die("UFFDIO_REGISTER");
	if (pthread_create(&t, NULL, exec_target, area))
		die("pthread_create");
	/* The thread's exec reads its argument: a fault nobody will resolve. */
	pfd.fd = uffd;
	pfd.events = POLLIN;
	if (poll(&pfd, 1, 120000) != 1 || read(uffd, &msg, sizeof(msg)) != sizeof(msg) ||
	    msg.event != UFFD_EVENT_PAGEFAULT)
		die("waiting for the thread's page fault");
	printf("blocked %d %d\n", getpid(), exec_tid);
	if (strcmp(how, "kill")) {
		char c;

		while (read(STDIN_FILENO, &c, 1) < 0 && errno == EINTR)
			;
	}
	if (!strcmp(how, "exit"))
		syscall(SYS_exit_group, 0);
	if (!strcmp(how, "exec")) {
		char *argv[] = { "true", NULL };

		execve("/bin/true", argv, environ);
		die("execve /bin/true");
	}
	for (;;)
		pause();
}

int main(int argc, char **argv)
{
	if (argc == 6 && !strcmp(argv[1], "leak")) {
		target = argv[2];
		return leak(atoi(argv[3]), atoi(argv[4]), argv[5]);
	}
	if (argc == 3 && !strcmp(argv[1], "blocked"))
		return blocked(argv[2]);
	fprintf(stderr, "usage: thread_exec leak PROGRAM N FAILS TOKEN | blocked exit|exec|kill\n");
	return 2;
}
