/* Split, shuffle, packing and micro-batches on hand-made datasets: packed
 * examples never see each other (segments), positions restart, targets stay
 * inside their example, orders are deterministic from the seed. */
#include "testutil.h"

#include "core/status.h"
#include "data/dataset/dataset_internal.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

/* Example i: ids 100000*(i+1) + j, the first `prompt` tokens masked. */
static void make_sft(dataset *d, int n, const int *len, int prompt)
{
    memset(d, 0, sizeof *d);
    d->kind = EX_SFT;
    d->storage = ds_arena_new();
    size_t cap = 0;
    for (int i = 0; i < n; i++) {
        sft_example *x = ds_dataset_push(d, &cap);
        x->n = len[i];
        x->ids = ds_arena_alloc(d->storage, (size_t)len[i] * 4);
        x->train = ds_arena_alloc(d->storage, (size_t)len[i]);
        for (int j = 0; j < len[i]; j++) {
            x->ids[j] = 100000 * (i + 1) + j;
            x->train[j] = j >= prompt;
        }
    }
}

static int owner(int32_t id) { return id / 100000 - 1; }

static int *lengths(int n, int lo, int hi)
{
    int *len = malloc((size_t)n * sizeof *len);
    for (int i = 0; i < n; i++) len[i] = lo + (i * 7919) % (hi - lo + 1);
    return len;
}

Test(split, sizes_disjoint_deterministic)
{
    dataset d, tr, va, tr2, va2, tr3, va3;
    int *len = lengths(100, 3, 9);
    make_sft(&d, 100, len, 1);
    cr_assert_eq(dataset_split(&d, 0.1, 42, &tr, &va), DS_OK, "%s", ds_errmsg());
    cr_expect_eq(va.n, 10);
    cr_expect_eq(tr.n, 90);
    int seen[100] = {0};
    for (int i = 0; i < tr.n; i++) seen[owner(tr.sft[i].ids[0])]++;
    for (int i = 0; i < va.n; i++) seen[owner(va.sft[i].ids[0])] += 10;
    for (int i = 0; i < 100; i++) cr_expect(seen[i] == 1 || seen[i] == 10, "example %d in both or neither", i);
    for (int i = 1; i < va.n; i++) cr_expect_lt(owner(va.sft[i - 1].ids[0]), owner(va.sft[i].ids[0]), "d's order kept");
    cr_expect_eq(va.sft[0].ids, d.sft[owner(va.sft[0].ids[0])].ids, "a view shares d's tokens");

    cr_assert_eq(dataset_split(&d, 0.1, 42, &tr2, &va2), DS_OK);
    bool same = true;
    for (int i = 0; i < va.n; i++) same &= va.sft[i].ids == va2.sft[i].ids;
    cr_expect(same, "same seed, same split");
    cr_assert_eq(dataset_split(&d, 0.1, 43, &tr3, &va3), DS_OK);
    same = true;
    for (int i = 0; i < va.n; i++) same &= va.sft[i].ids == va3.sft[i].ids;
    cr_expect(!same, "another seed, another split");
    dataset_free(&tr); dataset_free(&va); dataset_free(&tr2); dataset_free(&va2); dataset_free(&tr3); dataset_free(&va3);

    cr_assert_eq(dataset_split(&d, 7, 1, &tr, &va), DS_OK);
    cr_expect_eq(va.n, 7, "a count >= 1");
    cr_expect_eq(tr.n, 93);
    dataset_free(&tr); dataset_free(&va);
    cr_assert_eq(dataset_split(&d, 0, 1, &tr, &va), DS_OK);
    cr_expect_eq(va.n, 0);
    cr_expect_eq(tr.n, 100);
    dataset_free(&tr); dataset_free(&va);
    cr_expect_eq(dataset_split(&d, 100, 1, &tr, &va), DS_ECONFIG, "nothing left to train on");
    cr_expect_eq(dataset_split(&d, -0.5, 1, &tr, &va), DS_ECONFIG);
    dataset_free(&d);
    free(len);
}

static void plan_order(const epoch_plan *p, int *order, int n)
{
    cr_assert_eq(p->row_start[p->nrows], n);
    for (int k = 0; k < n; k++) order[k] = p->items[k];
}

Test(plan, unshuffled_unpacked_rows_and_batches)
{
    dataset d;
    int *len = lengths(10, 3, 9);
    make_sft(&d, 10, len, 1);
    epoch_plan p;
    cr_assert_eq(epoch_plan_make(&d, 1, 0, false, false, 16, 4, &p), DS_OK, "%s", ds_errmsg());
    cr_expect_eq(p.nrows, 10);
    cr_expect_eq(p.nbatches, 3, "10 rows in batches of 4: 4, 4, 2");
    cr_expect_eq(p.batch_start[2], 8);
    cr_expect_eq(p.batch_start[3], 10);
    for (int i = 0; i < 10; i++) cr_expect_eq(p.items[i], i);
    epoch_plan_free(&p);
    dataset_free(&d);
    free(len);
}

Test(plan, shuffle_is_deterministic_per_seed_and_epoch)
{
    dataset d;
    int *len = lengths(50, 3, 9);
    make_sft(&d, 50, len, 1);
    int a[50], b[50], c[50], e[50];
    epoch_plan p;
    cr_assert_eq(epoch_plan_make(&d, 7, 0, true, false, 16, 4, &p), DS_OK);
    plan_order(&p, a, 50);
    epoch_plan_free(&p);
    cr_assert_eq(epoch_plan_make(&d, 7, 0, true, false, 16, 4, &p), DS_OK);
    plan_order(&p, b, 50);
    epoch_plan_free(&p);
    cr_assert_eq(epoch_plan_make(&d, 8, 0, true, false, 16, 4, &p), DS_OK);
    plan_order(&p, c, 50);
    epoch_plan_free(&p);
    cr_assert_eq(epoch_plan_make(&d, 7, 1, true, false, 16, 4, &p), DS_OK);
    plan_order(&p, e, 50);
    epoch_plan_free(&p);
    cr_expect(memcmp(a, b, sizeof a) == 0, "same seed and epoch, same order");
    cr_expect(memcmp(a, c, sizeof a) != 0, "another seed, another order");
    cr_expect(memcmp(a, e, sizeof a) != 0, "another epoch, another order");
    int count[50] = {0};
    for (int i = 0; i < 50; i++) count[a[i]]++;
    for (int i = 0; i < 50; i++) cr_expect_eq(count[i], 1, "a permutation");
    bool moved = false;
    for (int i = 0; i < 50; i++) moved |= a[i] != i;
    cr_expect(moved);
    dataset_free(&d);
    free(len);
}

Test(plan, packing_is_greedy_and_never_splits)
{
    static const int len[] = {5, 6, 4, 9, 3, 3, 3, 10, 1};
    dataset d;
    make_sft(&d, 9, len, 1);
    epoch_plan p;
    cr_assert_eq(epoch_plan_make(&d, 1, 0, false, true, 12, 2, &p), DS_OK, "%s", ds_errmsg());
    /* 5+6 | 4 (9 does not fit) | 9+3 | 3+3 (10 does not fit) | 10+1 */
    static const int want_rows[] = {0, 2, 3, 5, 7, 9};
    cr_assert_eq(p.nrows, 5);
    for (int r = 0; r <= 5; r++) cr_expect_eq(p.row_start[r], want_rows[r], "row %d", r);
    cr_expect_eq(p.nbatches, 3);
    epoch_plan_free(&p);

    cr_expect_eq(epoch_plan_make(&d, 1, 0, false, true, 8, 2, &p), DS_EINTERNAL, "an example longer than a row");
    dataset_free(&d);
}

Test(plan, packed_batch_segments_positions_targets)
{
    static const int len[] = {5, 6, 4, 9};
    dataset d;
    make_sft(&d, 4, len, 2);
    epoch_plan p;
    cr_assert_eq(epoch_plan_make(&d, 1, 0, false, true, 12, 2, &p), DS_OK);
    batch b;
    cr_assert_eq(epoch_plan_batch(&p, 0, &d, -7, &b), DS_OK, "%s", ds_errmsg());
    cr_assert_eq(b.B, 2);
    cr_assert_eq(b.T, 11, "T = longest row (5 + 6)");
    /* row 0: example 0 (5 tokens) then example 1 (6 tokens) */
    for (int c = 0; c < 11; c++) {
        int ex = c < 5 ? 0 : 1, j = c < 5 ? c : c - 5, n = len[ex];
        cr_expect_eq(b.ids[c], 100000 * (ex + 1) + j);
        cr_expect_eq(b.pos[c], j, "positions restart at 0 for each example");
        cr_expect_eq(b.seg[c], ex, "each packed example has its own segment");
        /* targets: the next token of the same example where it is trained (j+1 >= prompt 2) */
        int32_t want = (j + 1 < n && j + 1 >= 2) ? 100000 * (ex + 1) + j + 1 : -1;
        cr_expect_eq(b.targets[c], want, "column %d", c);
    }
    cr_expect_eq(b.targets[4], -1, "the last token of an example predicts nothing across the boundary");
    /* row 1: example 2 (4 tokens), padding after */
    for (int c = 4; c < 11; c++) {
        cr_expect_eq(b.ids[11 + c], -7, "pad id");
        cr_expect_eq(b.targets[11 + c], -1);
        cr_expect_neq(b.seg[11 + c], 0, "padding is in no example's segment");
    }
    long trained = batch_count_targets(&b);
    cr_expect_eq(trained, (5 - 2) + (6 - 2) + (4 - 2));
    batch_free(&b);
    cr_assert_eq(epoch_plan_batch(&p, 1, &d, 0, &b), DS_OK);
    cr_expect_eq(b.B, 1);
    cr_expect_eq(b.T, 9);
    batch_free(&b);
    cr_expect_neq(epoch_plan_batch(&p, 2, &d, 0, &b), DS_OK, "out of range");
    epoch_plan_free(&p);
    dataset_free(&d);
}

Test(plan, preference_rows_chosen_then_rejected)
{
    dataset d = {0};
    d.kind = EX_PREF;
    d.storage = ds_arena_new();
    size_t cap = 0;
    static const int32_t prompt[] = {0, 11, 12}, ch[] = {21, 22, 1}, rj[] = {31, 1};
    for (int i = 0; i < 3; i++) {
        pref_example *x = ds_dataset_push(&d, &cap);
        *x = (pref_example){(int32_t *)prompt, 3, (int32_t *)ch, 3, (int32_t *)rj, 2};
    }
    epoch_plan p;
    cr_assert_eq(epoch_plan_make(&d, 1, 0, false, true, 16, 2, &p), DS_OK);
    cr_expect_eq(p.nrows, 3, "preference pairs are never packed");
    batch b;
    cr_assert_eq(epoch_plan_batch(&p, 0, &d, 9, &b), DS_OK);
    cr_assert_eq(b.B, 4, "two pairs, two rows each");
    cr_assert_eq(b.T, 6);
    static const int32_t want_c[] = {-1, -1, 21, 22, 1, -1}, want_r[] = {-1, -1, 31, 1, -1, -1};
    for (int r = 0; r < 4; r += 2)
        for (int c = 0; c < 6; c++) {
            cr_expect_eq(b.targets[r * 6 + c], want_c[c], "chosen row %d col %d", r, c);
            cr_expect_eq(b.targets[(r + 1) * 6 + c], want_r[c], "rejected row %d col %d", r + 1, c);
        }
    cr_expect_eq(b.ids[6 + 5], 9, "rejected row padded");
    batch_free(&b);
    epoch_plan_free(&p);
    dataset_free(&d);
}

Test(plan, mcq_rows_one_per_choice)
{
    dataset d = {0};
    d.kind = EX_MCQ;
    d.storage = ds_arena_new();
    size_t cap = 0;
    static int32_t prompt[] = {0, 5, 6, 7}, c0[] = {40}, c1[] = {41, 42};
    static int32_t *choices[] = {c0, c1};
    static int nch[] = {1, 2};
    static char *texts[] = {" A", " B"};
    mcq_example *x = ds_dataset_push(&d, &cap);
    *x = (mcq_example){prompt, 4, 2, choices, nch, texts, 1};
    epoch_plan p;
    cr_assert_eq(epoch_plan_make(&d, 1, 0, true, true, 16, 8, &p), DS_OK);
    batch b;
    cr_assert_eq(epoch_plan_batch(&p, 0, &d, 0, &b), DS_OK);
    cr_expect_eq(b.B, 2);
    cr_expect_eq(b.T, 6);
    cr_expect_eq(b.targets[3], 40);
    cr_expect_eq(b.targets[6 + 3], 41);
    cr_expect_eq(b.targets[6 + 4], 42);
    cr_expect_eq(batch_count_targets(&b), 3);
    batch_free(&b);
    epoch_plan_free(&p);
    dataset_free(&d);
}
