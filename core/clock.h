/* core/clock.h - time for measurements. */
#ifndef DS_CORE_CLOCK_H
#define DS_CORE_CLOCK_H

/* Seconds on the monotonic clock (CLOCK_MONOTONIC): only differences mean
 * anything, and they are not moved by changes to the wall-clock time. */
double ds_now(void);

#endif
