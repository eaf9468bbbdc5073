// SPDX-License-Identifier: GPL-2.0-only
/* Says who it runs as, for the tests to compare with the records of its exec
 * and exit: its real uid, effective uid and effective gid, and audit's login
 * uid and session id ("-" where the kernel has none), on one line:
 *
 *   ids TAG    prints "TAG UID EUID EGID LOGINUID SESSIONID"
 *
 * Run as given, as a set-user-ID copy, under sudo, su and setpriv. */
#include <stdio.h>
#include <unistd.h>

static void put_proc(const char *path)
{
	char text[32] = "-";
	FILE *f = fopen(path, "r");

	if (f) {
		if (!fgets(text, sizeof(text), f))
			text[0] = '-', text[1] = 0;
		fclose(f);
	}
	printf(" %s", text);
}

int main(int argc, char **argv)
{
	printf("%s %u %u %u", argc > 1 ? argv[1] : "-", (unsigned)getuid(), (unsigned)geteuid(),
	       (unsigned)getegid());
	put_proc("/proc/self/loginuid");
	put_proc("/proc/self/sessionid");
	putchar('\n');
	return 0;
}
