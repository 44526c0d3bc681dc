/* core/interrupt.h - Ctrl-C (SIGINT) and SIGTERM as a request to stop cleanly.
 *
 * main() installs the handlers once; long loops (training steps, evaluation
 * batches, the tensors of a merge or quantization, generated tokens) ask
 * ds_interrupted() and stop with DS_EINTERRUPTED (exit 130), leaving what
 * exists whole: a run writes a checkpoint first, a writer removes its
 * temporary output. A second signal ends the process at once (exit 130); the
 * temporary names it leaves are removed by the next run writing there.
 */
#ifndef DS_CORE_INTERRUPT_H
#define DS_CORE_INTERRUPT_H

#include <stdbool.h>

/* ds_interrupt_install() : catch SIGINT and SIGTERM from now on. */
void ds_interrupt_install(void);
/* ds_interrupted() : whether SIGINT or SIGTERM arrived since the install. */
bool ds_interrupted(void);
/* ds_interrupt_status() : the message "interrupted WHERE". @return DS_EINTERRUPTED. */
int ds_interrupt_status(const char *where);

#endif
