/* tests/testutil.h - helpers shared by the Criterion tests. */
#ifndef DS_TESTUTIL_H
#define DS_TESTUTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The folder with fixtures/ and tokenizers/: $DSFT_SHARED, else ../shared
 * beside the source tree. */
const char *tu_shared(void);
/* malloc'd path under the shared folder: tu_shared_path("fixtures/tiny-llama"). */
char *tu_shared_path(const char *rel);
/* malloc'd path under the source tree / the build tree. */
char *tu_source_path(const char *rel);
char *tu_binary_path(const char *rel);
/* malloc'd path of a test dataset: tests/data/datasets/NAME in the source tree. */
char *tu_dataset_path(const char *name);
/* The tokenizer in a folder under the shared folder ("tokenizers/llama3"),
 * loaded once per test process (Criterion forks per test) and kept until it
 * exits; a failure to load fails the test. */
struct tokenizer;
struct tokenizer *tu_tokenizer(const char *rel);
/* The ds-ft binary ($DSFT_BIN, set by ctest). */
const char *tu_dsft_bin(void);
/* A fresh temporary directory (malloc'd path). */
char *tu_tmpdir(void);

/* ||a - ref|| / ||ref|| in double; INFINITY if any value is NaN/inf. */
double tu_rel_err(const float *a, const float *ref, size_t n);
/* Fill with uniform values in [-scale, scale) from a seed. */
void tu_fill_uniform(float *x, size_t n, uint64_t seed, float scale);

/* Whether a CUDA device is usable (initialises CUDA: call only inside a test). */
bool tu_have_gpu(void);

/* Run a shell command; returns its exit status (or -1). Output goes to
 * `log` (may be NULL = inherit). */
int tu_run(const char *cmd, const char *log);

#endif
