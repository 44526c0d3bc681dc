/* The ranks' meeting point and the test sum (finetune/dist): gather, broadcast
 * and sum among forked processes, a rank that stops, torchrun's variables. */
#include "testutil.h"

#include "core/interrupt.h"
#include "core/status.h"
#include "finetune/dist/dist.h"
#include "finetune/train/ranks.h"

#include <criterion/criterion.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

/* Run body(rank) in `world` forked processes; their exit codes into codes. */
static void run_ranks(int world, int (*body)(const dist_env *), int *codes)
{
    int port = free_port();
    pid_t pid[8];
    for (int r = 0; r < world; r++) {
        pid[r] = fork();
        cr_assert_geq(pid[r], 0);
        if (pid[r] == 0) {
            dist_env e = {.rank = r, .world = world, .local_rank = r, .master_addr = "127.0.0.1", .master_port = port};
            _exit(body(&e));
        }
    }
    for (int r = 0; r < world; r++) {
        int st;
        cr_assert_eq(waitpid(pid[r], &st, 0), pid[r]);
        codes[r] = WIFEXITED(st) ? WEXITSTATUS(st) : 100 + WTERMSIG(st);
    }
}

static int gather_sum_broadcast(const dist_env *e)
{
    dist_comm *c;
    if (dist_open(e, DIST_TEST_SUM, &c)) return 10;
    if (dist_rank(c) != e->rank || dist_world(c) != e->world) return 11;
    int mine = 10 * e->rank + 1, all[8] = {0};
    if (dist_gather(c, &mine, sizeof mine, all)) return 12;
    for (int r = 0; r < e->world; r++)
        if (all[r] != 10 * r + 1) return 13;
    /* 300000 floats: more than one chunk of rank 0's reads */
    enum { N = 300000 };
    float *buf = malloc(sizeof(float) * N);
    for (int i = 0; i < N; i++) buf[i] = (float)(e->rank + 1) * 0.25f + (float)(i % 7);
    if (dist_sum_floats(c, buf, N)) return 14;
    float want_base = 0;
    for (int r = 0; r < e->world; r++) want_base += (float)(r + 1) * 0.25f;
    for (int i = 0; i < N; i++)
        if (buf[i] != want_base + (float)e->world * (float)(i % 7)) return 15;
    free(buf);
    char word[16] = {0};
    if (e->rank == 0) snprintf(word, sizeof word, "from rank 0");
    if (dist_broadcast(c, word, sizeof word) || strcmp(word, "from rank 0")) return 16;
    dist_close(c);
    return 0;
}

Test(dist, gather_sum_and_broadcast_over_three_ranks)
{
    int codes[3];
    run_ranks(3, gather_sum_broadcast, codes);
    for (int r = 0; r < 3; r++) cr_expect_eq(codes[r], 0, "rank %d: exit %d", r, codes[r]);
}

Test(dist, one_rank_alone)
{
    int codes[1];
    run_ranks(1, gather_sum_broadcast, codes);
    cr_expect_eq(codes[0], 0, "exit %d", codes[0]);
}

/* Rank 2 leaves after meeting the others: rank 0 names it, rank 1 names rank 0. */
static int one_leaves(const dist_env *e)
{
    dist_comm *c;
    if (dist_open(e, DIST_TEST_SUM, &c)) return 10;
    if (e->rank == 2) _exit(0);
    int mine = e->rank, all[3];
    int rc = dist_gather(c, &mine, sizeof mine, all);
    if (rc != DS_ETRAIN) return 20;
    const char *want = e->rank == 0 ? "rank 2 stopped (its connection closed)" : "rank 0 stopped";
    if (!strstr(ds_errmsg(), want)) {
        fprintf(stderr, "rank %d said: %s\n", e->rank, ds_errmsg());
        return 21;
    }
    dist_close(c);
    return 0;
}

Test(dist, a_rank_that_stops_is_named)
{
    int codes[3];
    run_ranks(3, one_leaves, codes);
    cr_expect_eq(codes[0], 0, "rank 0: exit %d", codes[0]);
    cr_expect_eq(codes[1], 0, "rank 1: exit %d", codes[1]);
}

/* Nobody listens: a rank gives up after DSFT_DIST_TIMEOUT, saying where it looked. */
Test(dist, nobody_at_the_master_port)
{
    setenv("DSFT_DIST_TIMEOUT", "0.3", 1);
    dist_env e = {.rank = 1, .world = 2, .master_addr = "127.0.0.1", .master_port = free_port()};
    dist_comm *c;
    cr_assert_eq(dist_open(&e, DIST_TEST_SUM, &c), DS_ETRAIN);
    cr_expect(strstr(ds_errmsg(), "nobody listens at 127.0.0.1:"), "%s", ds_errmsg());
    cr_expect(c == NULL);
}

Test(dist, torchrun_variables)
{
    dist_env e;
    bool present = true;
    unsetenv("WORLD_SIZE");
    cr_assert_eq(dist_env_read(&e, &present), DS_OK);
    cr_expect(!present);
    setenv("WORLD_SIZE", "4", 1);
    setenv("RANK", "3", 1);
    setenv("LOCAL_RANK", "1", 1);
    setenv("MASTER_ADDR", "10.0.0.1", 1);
    setenv("MASTER_PORT", "29500", 1);
    cr_assert_eq(dist_env_read(&e, &present), DS_OK, "%s", ds_errmsg());
    cr_expect(present && e.world == 4 && e.rank == 3 && e.local_rank == 1 && e.master_port == 29500);
    cr_expect_str_eq(e.master_addr, "10.0.0.1");
    setenv("TORCHELASTIC_USE_AGENT_STORE", "True", 1);   /* torchrun's store has MASTER_PORT */
    cr_assert_eq(dist_env_read(&e, &present), DS_OK, "%s", ds_errmsg());
    cr_expect_eq(e.master_port, 29501);
    setenv("DSFT_MASTER_PORT", "31000", 1);
    cr_assert_eq(dist_env_read(&e, &present), DS_OK, "%s", ds_errmsg());
    cr_expect_eq(e.master_port, 31000);
    unsetenv("DSFT_MASTER_PORT");
    unsetenv("TORCHELASTIC_USE_AGENT_STORE");
    setenv("RANK", "4", 1);
    cr_expect_eq(dist_env_read(&e, &present), DS_EUSAGE);
    cr_expect(strstr(ds_errmsg(), "RANK=4: expected a whole number from 0 to 3"), "%s", ds_errmsg());
    setenv("RANK", "1", 1);
    unsetenv("MASTER_PORT");
    cr_expect_eq(dist_env_read(&e, &present), DS_EUSAGE);
    cr_expect(strstr(ds_errmsg(), "MASTER_PORT is not"), "%s", ds_errmsg());
}

Test(dist, the_local_rank_picks_a_visible_gpu)
{
    dist_env e = {.rank = 1, .world = 2, .local_rank = 1};
    setenv("CUDA_VISIBLE_DEVICES", "2,5", 1);
    unsetenv("NCCL_NVLS_ENABLE");
    cr_assert_eq(dist_select_gpu(&e), DS_OK);
    cr_expect_str_eq(getenv("CUDA_VISIBLE_DEVICES"), "5");
    cr_expect_str_eq(getenv("NCCL_NVLS_ENABLE"), "0");
    setenv("NCCL_NVLS_ENABLE", "1", 1);   /* the user's choice stays */
    unsetenv("CUDA_VISIBLE_DEVICES");
    cr_assert_eq(dist_select_gpu(&e), DS_OK);
    cr_expect_str_eq(getenv("CUDA_VISIBLE_DEVICES"), "1");
    cr_expect_str_eq(getenv("NCCL_NVLS_ENABLE"), "1");
    setenv("CUDA_VISIBLE_DEVICES", "3", 1);
    cr_expect_eq(dist_select_gpu(&e), DS_EUSAGE);
}

/* The trainer's agreement (finetune/train/ranks.h): the step's loss and metrics
 * summed in rank order, a stop request seen by all; one rank's failure becomes
 * every rank's, with its reason. */
static int agree(const dist_env *e)
{
    dist_comm *c;
    if (dist_open(e, DIST_TEST_SUM, &c)) return 10;
    trainer_ranks k;
    ranks_init(&k, c);
    double loss = 0.5 * (e->rank + 1);
    loss_metrics m = {0};
    loss_metrics_add(&m, "rewards/accuracies", e->rank, 1);
    if (e->rank == 2) {
        ds_interrupt_install();
        raise(SIGINT);
    }
    if (ranks_agree(&k, DS_OK, "at step 1", &loss, &m)) return 11;
    if (loss != 3.0 || m.n != 1 || strcmp(m.name[0], "rewards/accuracies") || m.sum[0] != 3 || m.count[0] != 3) return 12;
    if (!k.stop) return 13;
    int rc = e->rank == 1 ? ds_fail(DS_ENOMEM, "out of memory allocating 12 bytes for a test") : DS_OK;
    rc = ranks_agree(&k, rc, "at step 2", &loss, &m);
    const char *want = e->rank == 1 ? "out of memory allocating 12 bytes for a test"
                                    : "rank 1 of 3 stopped at step 2: out of memory allocating 12 bytes for a test";
    if (rc != DS_ENOMEM || strcmp(ds_errmsg(), want)) {
        fprintf(stderr, "rank %d: %d %s\n", e->rank, rc, ds_errmsg());
        return 14;
    }
    dist_close(c);
    return 0;
}

Test(dist, ranks_agree_on_the_step_and_on_a_failure)
{
    int codes[3];
    run_ranks(3, agree, codes);
    for (int r = 0; r < 3; r++) cr_expect_eq(codes[r], 0, "rank %d: exit %d", r, codes[r]);
}
