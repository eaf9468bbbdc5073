// SPDX-License-Identifier: GPL-2.0-only
/* procmon-ctl's object as it was before it ran on older kernels: handle_exit read
 * sched_process_exit's group_dead argument, which only kernels since 6.16 pass.
 * Kernels before that reject it ("func 'sched_process_exit' doesn't have 2-th
 * argument").  The doctor tests load it to check that `doctor` fails exactly where
 * `load` does.  The real programs are renamed out of the way; this handle_exit
 * takes the place of the real one. */
#define handle_exit handle_exit_portable
#include "process_monitor.bpf.c"
#undef handle_exit

SEC("tp_btf/sched_process_exit")
int handle_exit(unsigned long long *ctx)
{
	bool group_dead = ctx[1]; /* (struct task_struct *p, bool group_dead) */

	if (group_dead)
		count(COUNTER_EXITS);
	return 0;
}
