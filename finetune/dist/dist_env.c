/* finetune/dist/dist_env.c - torchrun's variables, and the GPU a worker takes. */
#include "dist_internal.h"

#include "core/status.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A variable holding a whole number in [lo, hi]. */
static int env_int(const char *name, int lo, int hi, int *out)
{
    const char *s = getenv(name);
    if (!s || !*s) return ds_fail(DS_EUSAGE, "WORLD_SIZE is set but %s is not (torchrun sets RANK, WORLD_SIZE, "
                                             "LOCAL_RANK, MASTER_ADDR and MASTER_PORT)", name);
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || end == s || v < lo || v > hi)
        return ds_fail(DS_EUSAGE, "%s=%s: expected a whole number from %d to %d", name, s, lo, hi);
    *out = (int)v;
    return DS_OK;
}

int dist_env_read(dist_env *e, bool *present)
{
    memset(e, 0, sizeof *e);
    *present = getenv("WORLD_SIZE") != NULL;
    if (!*present) return DS_OK;
    int rc = env_int("WORLD_SIZE", 1, 65536, &e->world);
    if (!rc) rc = env_int("RANK", 0, e->world - 1, &e->rank);
    if (!rc) rc = env_int("LOCAL_RANK", 0, e->world - 1, &e->local_rank);
    if (!rc) rc = env_int("MASTER_PORT", 1, 65535, &e->master_port);
    /* torchrun's agents keep their own store at MASTER_PORT and tell their
     * workers so: ds-ft's rank 0 takes the next port (or DSFT_MASTER_PORT). */
    const char *agent = getenv("TORCHELASTIC_USE_AGENT_STORE");
    if (!rc && getenv("DSFT_MASTER_PORT")) rc = env_int("DSFT_MASTER_PORT", 1, 65535, &e->master_port);
    else if (!rc && agent && !strcmp(agent, "True")) {
        if (e->master_port == 65535) rc = ds_fail(DS_EUSAGE, "MASTER_PORT=65535 is torchrun's; set DSFT_MASTER_PORT");
        e->master_port++;
    }
    const char *addr = getenv("MASTER_ADDR");
    if (!rc && (!addr || !*addr))
        rc = ds_fail(DS_EUSAGE, "WORLD_SIZE is set but MASTER_ADDR is not (the address of the machine of rank 0)");
    if (!rc && strlen(addr) >= sizeof e->master_addr) rc = ds_fail(DS_EUSAGE, "MASTER_ADDR is too long");
    if (!rc) snprintf(e->master_addr, sizeof e->master_addr, "%s", addr);
    return rc;
}

double dist_timeout_s(void)
{
    const char *s = getenv("DSFT_DIST_TIMEOUT");
    double t = s ? atof(s) : 0;
    return t > 0 ? t : 600;
}

int dist_select_gpu(const dist_env *e)
{
    /* The LOCAL_RANK-th entry of what the user made visible (all GPUs when nothing). */
    const char *vis = getenv("CUDA_VISIBLE_DEVICES");
    char dev[64];
    if (vis && *vis) {
        const char *p = vis;
        for (int i = 0; i < e->local_rank && p; i++) {
            p = strchr(p, ',');
            if (p) p++;
        }
        size_t n = p ? strcspn(p, ",") : 0;
        if (!p || n == 0 || n >= sizeof dev)
            return ds_fail(DS_EUSAGE, "LOCAL_RANK=%d but CUDA_VISIBLE_DEVICES=%s names fewer GPUs", e->local_rank, vis);
        memcpy(dev, p, n);
        dev[n] = '\0';
    } else {
        snprintf(dev, sizeof dev, "%d", e->local_rank);
    }
    if (setenv("CUDA_VISIBLE_DEVICES", dev, 1)) return ds_fail(DS_EUSAGE, "cannot set CUDA_VISIBLE_DEVICES");
    /* NVLink SHARP (multicast) reserves memory and has hung on some drivers; it
     * buys nothing for one all-reduce of a few tens of MB per step. */
    if (!getenv("NCCL_NVLS_ENABLE") && setenv("NCCL_NVLS_ENABLE", "0", 1))
        return ds_fail(DS_EUSAGE, "cannot set NCCL_NVLS_ENABLE");
    return DS_OK;
}
