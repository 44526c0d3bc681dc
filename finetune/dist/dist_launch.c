/* finetune/dist/dist_launch.c - `ds-ft train RECIPE --gpus N`: N workers on this
 * machine, started as torchrun starts them (the same variables), so that a
 * worker does not know or care which launcher it has. */
#include "dist_internal.h"

#include "core/clock.h"
#include "core/status.h"

#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* A port nobody listens on now (the kernel's pick); rank 0 binds it next. */
static int free_port(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    int ok = fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
             getsockname(fd, (struct sockaddr *)&a, &len) == 0;
    if (fd >= 0) close(fd);
    if (!ok) return ds_fail(DS_EIO, "cannot find a free local port for the workers: %s", strerror(errno));
    *port = ntohs(a.sin_port);
    return DS_OK;
}

static volatile sig_atomic_t pending_signal;
static void remember_signal(int sig) { pending_signal = sig; }

/* The worker's environment, then this program again. Never returns. */
static void exec_worker(int rank, int nproc, int port, char **argv)
{
    char v[32];
    snprintf(v, sizeof v, "%d", rank);
    setenv("RANK", v, 1);
    setenv("LOCAL_RANK", v, 1);
    snprintf(v, sizeof v, "%d", nproc);
    setenv("WORLD_SIZE", v, 1);
    setenv("LOCAL_WORLD_SIZE", v, 1);
    setenv("MASTER_ADDR", "127.0.0.1", 1);
    snprintf(v, sizeof v, "%d", port);
    setenv("MASTER_PORT", v, 1);
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    execv("/proc/self/exe", argv);
    fprintf(stderr, "ds-ft: error: rank %d: cannot start /proc/self/exe: %s\n", rank, strerror(errno));
    _exit(DS_EINTERNAL);
}

static void signal_all(const pid_t *pid, int n, int sig)
{
    for (int i = 0; i < n; i++)
        if (pid[i] > 0) kill(pid[i], sig);
}

/* A worker's end as a status: its exit code (ds-ft's codes), or a signal. */
static int exit_status(int st) { return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st); }

int dist_launch(int nproc, char **argv)
{
    int port = 0;
    int rc = free_port(&port);
    if (rc) return rc;
    fflush(NULL);
    pid_t pid[nproc];
    int status[nproc];
    for (int i = 0; i < nproc; i++) pid[i] = 0, status[i] = -1;
    struct sigaction sa = {.sa_handler = remember_signal}, old_int, old_term;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    /* The workers get a process group of their own: a Ctrl-C reaches this
     * process alone, and is passed on once, as a second one would end them at once. */
    int started = 0;
    for (; started < nproc; started++) {
        pid[started] = fork();
        if (pid[started] < 0) break;
        if (pid[started] == 0) {
            setpgid(0, started ? pid[0] : 0);
            exec_worker(started, nproc, port, argv);
        }
        setpgid(pid[started], pid[0]);
    }
    if (started < nproc) {
        rc = ds_fail(DS_ETRAIN, "cannot start worker %d of %d: %s", started, nproc, strerror(errno));
        signal_all(pid, started, SIGKILL);
    }
    int running = started, first_failed = -1;
    double term_at = 0, kill_at = 0;
    while (running > 0) {
        int st;
        pid_t p = waitpid(-1, &st, WNOHANG);
        if (p > 0) {
            for (int i = 0; i < started; i++)
                if (pid[i] == p) {
                    status[i] = exit_status(st);
                    pid[i] = 0;
                    running--;
                    if (status[i] && first_failed < 0) first_failed = i;
                }
            /* The others learn a rank's failure from the rank itself and stop; the
             * signals only end a worker that waits where nothing tells it. */
            if (first_failed >= 0 && !term_at) term_at = ds_now() + 10, kill_at = ds_now() + 40;
            continue;
        }
        if (p < 0 && errno != EINTR) break;
        if (pending_signal) {
            signal_all(pid, started, pending_signal);
            pending_signal = 0;
        }
        if (term_at && ds_now() > term_at) {
            signal_all(pid, started, SIGTERM);
            term_at = 1e300;
        }
        if (kill_at && ds_now() > kill_at) {
            signal_all(pid, started, SIGKILL);
            kill_at = 1e300;
        }
        nanosleep(&(struct timespec){.tv_nsec = 20000000}, NULL);
    }
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    if (rc) return rc;
    int who = first_failed;   /* the first to end badly: the others stopped because of it */
    if (who < 0) return DS_OK;
    int s = status[who];
    if (s > 128 && s != DS_EINTERRUPTED)
        return ds_fail(DS_ETRAIN, "rank %d of %d was killed by signal %d", who, nproc, s - 128);
    if (s == DS_EINTERRUPTED) return ds_fail(s, "interrupted: the %d ranks stopped after the same step", nproc);
    return ds_fail(s, "rank %d of %d stopped with exit status %d (its message is above)", who, nproc, s);
}
