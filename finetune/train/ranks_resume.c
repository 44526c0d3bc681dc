/* finetune/train/ranks_resume.c - a resumed run's state, from rank 0 to the other
 * ranks: rank 0 alone reads the checkpoint (the others may run on machines that
 * do not see output_dir), then every rank starts from the same bits. */
#include "trainer.h"

#include "core/mem.h"
#include "core/status.h"

#include <stdlib.h>
#include <string.h>

int ranks_share_resume(trainer *x)
{
    dist_comm *c = x->ranks.comm;
    bool root = x->ranks.rank == 0;
    size_t P = x->ctx.adapter->nparams;
    float *params = ds_malloc(sizeof(float) * P * 3, "the resumed adapter and optimizer state");
    if (!params) return DS_ENOMEM;
    float *m = params + P, *v = m + P;
    int rc = root ? engine_get_params(x->ctx.eng, params) : DS_OK;
    if (!rc && root) rc = engine_get_adam(x->ctx.eng, m, v);
    train_state st = x->st;
    if (!rc) rc = dist_broadcast(c, &st, sizeof st);
    if (!rc) rc = dist_broadcast(c, params, sizeof(float) * P * 3);
    if (!rc && !root) rc = engine_set_params(x->ctx.eng, params);
    if (!rc && !root) rc = engine_set_adam(x->ctx.eng, m, v);
    if (!rc && !root) {
        int64_t total = x->st.total_steps;
        x->st = st;
        x->st.total_steps = total;
        /* the metrics window names metrics by pointers of rank 0's process; only rank 0 logs it */
        memset(&x->st.window, 0, sizeof x->st.window);
    }
    free(params);
    return rc ? ds_fail_context(rc, "rank %d of %d: taking rank 0's checkpoint: ", x->ranks.rank, x->ranks.world) : rc;
}
