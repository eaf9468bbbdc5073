// SPDX-License-Identifier: GPL-2.0-only
/* procmon-ctl's object with an exit program that reads a third argument of
 * sched_process_exit, which no kernel passes: every verifier refuses it.  The
 * doctor tests load it to check that `doctor` fails exactly where `load` does. */
#define handle_exit handle_exit_portable
#include "process_monitor.bpf.c"
#undef handle_exit

SEC("tp_btf/sched_process_exit")
int handle_exit(unsigned long long *ctx)
{
	if (ctx[2])
		count(COUNTER_EXITS);
	return 0;
}
