/* data/dataset/dataset_internal.h - what dataset.c, dataset_records.c, epoch_plan.c
 * and token_cache.c share: the token arena, dataset types, and records
 * rendered as template text (before tokenization, so the parsing can be
 * tested and fuzzed without a tokenizer).
 */
#ifndef DS_DATA_DATASET_INTERNAL_H
#define DS_DATA_DATASET_INTERNAL_H

#include "chat_template.h"
#include "dataset.h"

#include <jansson.h>

#include <stdbool.h>
#include <stddef.h>

/* ---- arena: every token buffer of a dataset lives in one of these ---- */
typedef struct ds_arena_block ds_arena_block;
typedef struct {
    ds_arena_block *head;
} ds_arena;

ds_arena *ds_arena_new(void);                      /* NULL when out of memory (message set) */
void *ds_arena_alloc(ds_arena *a, size_t bytes);   /* 8-byte aligned; NULL when out of memory (message set) */
void ds_arena_free(ds_arena *a);

/* ---- dataset types ---- */
#define DS_TYPE_ID(name, id) id
typedef enum { DATASET_TYPES(DS_TYPE_ID, DS_COMMA) } ds_type;

/* The type of a source and whether it can give `kind` examples (DS_ECONFIG). */
int ds_source_type(const data_source *s, example_kind kind, ds_type *type, bool *cloze);

/* ---- a record rendered through the template ---- */
typedef struct {
    example_kind kind;
    ct_render seq;                 /* EX_SFT: the whole sequence */
    bool all_trained;              /* EX_SFT from a text record: every token trained */
    ct_render prompt;              /* EX_PREF, EX_MCQ */
    ct_render chosen, rejected;    /* EX_PREF: the replies (trained pieces only) */
    int nchoices, answer;          /* EX_MCQ */
    char **choice;                 /* (nchoices) continuations, NUL-terminated */
} ds_rendered;

typedef struct {
    ds_type type;
    bool cloze;                    /* mcq: " {choice}" instead of " {letter}" */
    const chat_template *tmpl;
    example_kind kind;
    const char *file;              /* for messages */
    int answer_base;               /* mcq: what integer answers count from (0 or 1), or ANSWER_BASE_ANY */
} ds_render_ctx;

/* Integer answers of either numbering are accepted, and a MedMCQA record
 * without one too (data cleaning reads the text, not the answer). */
#define ANSWER_BASE_ANY (-1)

/* What the integer answers of mcq source s count from: its answer_base, or
 * for MedMCQA's cop what the file shows (a 0 or a 4), said through
 * opt->say; a file that shows neither is DS_EDATA asking for answer_base
 * (answer_base.c). */
int ds_answer_base(const data_source *s, const data_options *opt, int *base);

/* One record (a JSON object from `line`) to text pieces. Bad records are
 * DS_EDATA "file:line: ..." naming the field. */
int ds_render_record(const ds_render_ctx *c, const json_t *obj, int line, ds_rendered *out);
void ds_rendered_free(ds_rendered *r);

/* ---- dataset building ---- */
/* d's example array (d->sft, d->pref or d->mcq, by d->kind) and the size of
 * one example; ds_set_examples puts an array there. */
static inline void *ds_examples(const dataset *d, size_t *elem_size)
{
    switch (d->kind) {
    case EX_SFT: *elem_size = sizeof *d->sft; return d->sft;
    case EX_PREF: *elem_size = sizeof *d->pref; return d->pref;
    default: *elem_size = sizeof *d->mcq; return d->mcq;
    }
}
static inline void ds_set_examples(dataset *d, void *arr)
{
    switch (d->kind) {
    case EX_SFT: d->sft = arr; break;
    case EX_PREF: d->pref = arr; break;
    default: d->mcq = arr; break;
    }
}
/* Grow d's example array (room for *cap) for one more example; returns its
 * slot (zeroed), NULL when out of memory (message set). */
void *ds_dataset_push(dataset *d, size_t *cap);

#endif
