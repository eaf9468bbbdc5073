/* rewrite_argv ARG...: overwrites its own argument strings in place (as daemons
 * that retitle themselves do), says "rewritten" on stdout, then waits for stdin
 * to close.  /proc/PID/cmdline then shows the new text; the exec record was
 * written before the first instruction ran, so it holds the old. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	char buf[1];
	int i;

	for (i = 1; i < argc; i++)
		memset(argv[i], 'X', strlen(argv[i]));
	puts("rewritten");
	fflush(stdout);
	while (read(0, buf, 1) > 0)
		;
	return 0;
}
