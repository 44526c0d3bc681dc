/* tests/oom_sweep.h - an operation run again and again with allocation k of
 * core/mem.h failing (core/mem_test.h), for k = 0, 1, 2, ... until it
 * succeeds without reaching the failure (test_oom.c, test_oom_finetune.c).
 * Every failed run must return DS_ENOMEM with an "out of memory" message,
 * never succeed past the failure (a failure swallowed: the allocation's call
 * stack is printed), never fail for another reason; the operation itself
 * asserts that nothing half-written is left. */
#ifndef DS_TESTS_OOM_SWEEP_H
#define DS_TESTS_OOM_SWEEP_H

/* One run of the operation: DS_OK or a status. */
typedef int (*oom_operation)(void *ctx);

/* sweep() : fail every allocation `op` makes, in turn; returns how many there are. */
long sweep(const char *name, oom_operation op, void *ctx);
/* sweep_stacks() : fail the first allocation of each distinct call stack
 * (a loop's later turns take the same path), or every one with
 * DSFT_OOM_EVERY set; `op` must make the same allocations each run. Returns
 * how many it makes. */
long sweep_stacks(const char *name, oom_operation op, void *ctx);
/* files_in() : the entries of a folder (not . and ..). */
int files_in(const char *dir);

#endif
