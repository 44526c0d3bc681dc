/* core/interrupt.c - see interrupt.h. */
#include "interrupt.h"
#include "status.h"

#include <signal.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t g_signals;

static void on_signal(int sig)
{
    (void)sig;
    if (g_signals++) _exit(130);   /* asked twice: stop now */
}

void ds_interrupt_install(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

bool ds_interrupted(void) { return g_signals != 0; }

int ds_interrupt_status(const char *where) { return ds_fail(DS_EINTERRUPTED, "interrupted %s", where); }
