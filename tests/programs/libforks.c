// SPDX-License-Identifier: GPL-2.0-only
/* For the tests' fork_processes(), through ctypes: n children, each made by vfork()
 * and ended at once by _exit(0), each reaped before the next.  Each is a process of
 * its own (a fork record, an exit record, its parent the caller), as with fork(); but
 * no copy of the caller's page tables is made, which for the test suite's process
 * (some 480 MB by its end) cost 16 ms a fork on this machine.  Returns how many
 * were made: fewer than n only if vfork() failed (errno says why). */
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

int fork_exit_children(int n, int *pids)
{
	int i;

	for (i = 0; i < n; i++) {
		pid_t pid = vfork();

		if (pid == 0)
			_exit(0);
		if (pid < 0)
			return i;
		pids[i] = pid;
		while (waitpid(pid, NULL, 0) < 0)
			;
	}
	return n;
}
