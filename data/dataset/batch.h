/* data/dataset/batch.h - a micro-batch as the engine consumes it.
 *
 * B rows of T tokens. Several short examples may share a row (packing):
 * seg[] tells attention which tokens belong together (a token only sees
 * earlier tokens of its own segment) and pos[] restarts at 0 for each
 * example. targets[] is already shifted: targets[n] is the token the model
 * should predict at row position n (the next token), or -1 where nothing is
 * trained (prompt, padding, last token of an example) - the equivalent of
 * Hugging Face's labels[:, 1:] with -100 -> -1.
 */
#ifndef DS_DATA_BATCH_H
#define DS_DATA_BATCH_H

#include <stdint.h>

typedef struct {
    int B, T;
    int32_t *ids;       /* (B*T) input token ids */
    int32_t *pos;       /* (B*T) position ids */
    int32_t *seg;       /* (B*T) segment ids; padding gets its own segment */
    int32_t *targets;   /* (B*T) next-token targets or -1 */
} batch;

/* Allocate (zeroed, targets -1) / free the arrays of a B x T batch. */
int batch_alloc(batch *b, int B, int T);
void batch_free(batch *b);
/* Number of positions with a target. */
long batch_count_targets(const batch *b);
/* Sum of v over the positions of row `row` that have a target (targets (B*T),
 * v (B*T)): a sequence's log-likelihood from per-token log-probs. */
double batch_row_sum(const int32_t *targets, int T, const float *v, int row);

/* Fill row `row` of b from one sequence: ids (n), labels-style per-token
 * mask `train` (n; 1 = token i is trained on, i.e. predicted at i-1), segment
 * id and starting at column `col`. Positions restart at 0. Returns the next
 * free column. Padding (pad_id, own segment, no targets) is the caller's
 * batch_pad_row(). */
int batch_put(batch *b, int row, int col, const int32_t *ids, const uint8_t *train, int n, int32_t seg);
void batch_pad_row(batch *b, int row, int col, int32_t pad_id);

#endif
