/* data/dataset/dataset.c - loading a dataset: records -> template text -> tokens.
 *
 * Each template piece is encoded on its own (adjacent pieces with the same
 * mask are joined first, so a prompt tokenizes as one string), which puts
 * the boundary between masked prompt and trained completion exactly at a
 * token boundary. BOS is added by id when the template or the tokenizer
 * starts sequences with it; EOS by id where a piece asks for it. Token
 * buffers live in one arena per dataset (dataset.storage, dataset_arena.c).
 */
#include "dataset_internal.h"
#include "data/jsonl.h"

#include "core/buf.h"
#include "core/mem.h"
#include "core/status.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ---- encoding ---- */

typedef struct {
    int32_t *ids;
    uint8_t *train;
    size_t n, cap_ids, cap_train;
} seq;

static int seq_push(seq *s, int32_t id, uint8_t train)
{
    if (ds_grow(&s->ids, &s->cap_ids, s->n + 1, sizeof *s->ids) ||
        ds_grow(&s->train, &s->cap_train, s->n + 1, sizeof *s->train))
        return DS_ENOMEM;
    s->ids[s->n] = id;
    s->train[s->n] = train;
    s->n++;
    return DS_OK;
}

static void seq_free(seq *s)
{
    free(s->ids);
    free(s->train);
    memset(s, 0, sizeof *s);
}

typedef struct {
    const tokenizer *tok;
    int bos, eos;              /* ids, -1 = none */
    bool tok_bos;              /* the tokenizer adds BOS itself */
    bool train_inputs;
    int vocab_size;            /* 0 = unchecked */
    tok_ids scratch;
    ds_buf text;
} encoder;

static int encode_text(encoder *e, const char *text, size_t len, uint8_t train, seq *out)
{
    if (len == 0) return DS_OK;
    e->scratch.n = 0;
    int rc = tok_encode(e->tok, text, len, false, &e->scratch);
    for (size_t i = 0; i < e->scratch.n && !rc; i++) {
        int32_t id = e->scratch.ids[i];
        if (e->vocab_size > 0 && (id < 0 || id >= e->vocab_size)) {
            char *piece = NULL;
            (void)tok_decode(e->tok, &id, 1, false, &piece);
            rc = ds_fail(DS_EDATA, "token id %d (\"%s\") is outside the model's vocabulary (0..%d): the tokenizer "
                                   "and the model do not match", id, piece ? piece : "?", e->vocab_size - 1);
            free(piece);
        } else {
            rc = seq_push(out, id, train);
        }
    }
    return rc;
}

/* Encode a render: BOS (when asked), then each run of pieces with the same
 * mask as one string, EOS ids where pieces end with EOS. */
static int encode_render(encoder *e, const ct_render *r, bool with_bos, bool all_trained, seq *out)
{
    int rc = DS_OK;
    if (with_bos && !r->own_bos && (r->bos || e->tok_bos) && e->bos >= 0) rc = seq_push(out, e->bos, 0);
    for (int i = 0; i < r->n && !rc;) {
        bool train = r->p[i].train;
        size_t len = 0;
        int j = i;
        for (;;) {                         /* pieces i..j form one run */
            len += r->p[j].len;
            if (r->p[j].eos || j + 1 == r->n || r->p[j + 1].train != train) break;
            j++;
        }
        e->text.len = 0;
        for (int k = i; k <= j && !rc; k++) rc = ds_buf_append(&e->text, r->p[k].text, r->p[k].len);
        uint8_t t = (train || e->train_inputs || all_trained) ? 1 : 0;
        if (!rc) rc = encode_text(e, e->text.p, len, t, out);
        if (!rc && r->p[j].eos && e->eos >= 0) rc = seq_push(out, e->eos, t);
        i = j + 1;
    }
    return rc;
}

static int32_t *arena_ids(ds_arena *a, const int32_t *src, int n)
{
    int32_t *p = ds_arena_alloc(a, (size_t)n * sizeof *p);
    if (p && n) memcpy(p, src, (size_t)n * sizeof *p);
    return p;
}

/* ---- examples ---- */

typedef struct {
    dataset *d;
    ds_arena *arena;
    size_t cap;   /* room in d's example array */
    int seq_len;
} builder;

static bool has_target(const uint8_t *train, int n)
{
    for (int i = 1; i < n; i++)
        if (train[i]) return true;
    return false;
}

static int add_sft(builder *b, encoder *e, const ds_rendered *r)
{
    seq s = {0};
    int rc = encode_render(e, &r->seq, true, r->all_trained, &s);
    if (rc) {
        seq_free(&s);
        return rc;
    }
    int n = s.n > (size_t)INT32_MAX ? INT32_MAX : (int)s.n;
    if (n > b->seq_len) {
        n = b->seq_len;
        b->d->truncated++;
    }
    if (!has_target(s.train, n)) {
        b->d->dropped++;
        seq_free(&s);
        return DS_OK;
    }
    sft_example *x = ds_dataset_push(b->d, &b->cap);
    if (!x) rc = DS_ENOMEM;
    else {
        x->ids = arena_ids(b->arena, s.ids, n);
        x->train = ds_arena_alloc(b->arena, (size_t)n);
        x->n = n;
        if (!x->ids || !x->train) rc = DS_ENOMEM;
        else memcpy(x->train, s.train, (size_t)n);
    }
    seq_free(&s);
    return rc;
}

/* Make a prompt and its longest continuation (`longest` tokens) fit in
 * seq_len: when they do not, the prompt is cut from the left (a leading BOS
 * kept, and at least BOS and one prompt token left) and counted as
 * truncated. Returns how many tokens each continuation may keep. */
static size_t fit_prompt(builder *b, seq *p, size_t longest, int bos)
{
    int L = b->seq_len;
    if (p->n + longest <= (size_t)L) return SIZE_MAX;
    b->d->truncated++;
    int min_p = p->n < 2 ? (int)p->n : 2;
    int keep = (size_t)L > longest ? L - (int)longest : 0;
    if (keep < min_p) keep = min_p;
    if ((int)p->n > keep && keep > 0) {
        int head = (bos >= 0 && p->n > 0 && p->ids[0] == bos && keep > 1) ? 1 : 0;
        size_t drop = p->n - (size_t)keep;
        memmove(p->ids + head, p->ids + head + drop, ((size_t)keep - head) * sizeof *p->ids);
        memmove(p->train + head, p->train + head + drop, (size_t)keep - head);
        p->n = (size_t)keep;
    }
    return L - keep > 0 ? (size_t)(L - keep) : 0;
}

static int add_pref(builder *b, encoder *e, const ds_rendered *r)
{
    seq p = {0}, c = {0}, j = {0};
    int rc = encode_render(e, &r->prompt, true, false, &p);
    if (!rc) rc = encode_render(e, &r->chosen, false, false, &c);
    if (!rc) rc = encode_render(e, &r->rejected, false, false, &j);
    if (rc) goto done;
    size_t room = fit_prompt(b, &p, c.n > j.n ? c.n : j.n, e->bos);
    if (c.n > room) c.n = room;
    if (j.n > room) j.n = room;
    if (p.n == 0 || c.n == 0 || j.n == 0) {
        b->d->dropped++;
        goto done;
    }
    pref_example *x = ds_dataset_push(b->d, &b->cap);
    if (!x) {
        rc = DS_ENOMEM;
        goto done;
    }
    x->prompt = arena_ids(b->arena, p.ids, (int)p.n);
    x->chosen = arena_ids(b->arena, c.ids, (int)c.n);
    x->rejected = arena_ids(b->arena, j.ids, (int)j.n);
    x->n_prompt = (int)p.n;
    x->n_chosen = (int)c.n;
    x->n_rejected = (int)j.n;
    if (!x->prompt || !x->chosen || !x->rejected) rc = DS_ENOMEM;
done:
    seq_free(&p);
    seq_free(&c);
    seq_free(&j);
    return rc;
}

static int add_mcq(builder *b, encoder *e, const ds_rendered *r)
{
    seq p = {0};
    seq *ch = ds_calloc((size_t)r->nchoices, sizeof *ch, "the choices' tokens");
    int rc = ch ? encode_render(e, &r->prompt, true, false, &p) : DS_ENOMEM;
    for (int i = 0; i < r->nchoices && !rc; i++) rc = encode_text(e, r->choice[i], strlen(r->choice[i]), 1, &ch[i]);
    if (rc) goto done;
    size_t longest = 0;
    for (int i = 0; i < r->nchoices; i++)
        if (ch[i].n > longest) longest = ch[i].n;
    size_t room = fit_prompt(b, &p, longest, e->bos);
    for (int i = 0; i < r->nchoices; i++)
        if (ch[i].n > room) ch[i].n = room;
    bool empty = p.n == 0;
    for (int i = 0; i < r->nchoices; i++) empty |= ch[i].n == 0;
    if (empty) {
        b->d->dropped++;
        goto done;
    }
    mcq_example *x = ds_dataset_push(b->d, &b->cap);
    if (!x) {
        rc = DS_ENOMEM;
        goto done;
    }
    x->prompt = arena_ids(b->arena, p.ids, (int)p.n);
    x->n_prompt = (int)p.n;
    x->nchoices = r->nchoices;
    x->answer = r->answer;
    x->choice = ds_arena_alloc(b->arena, (size_t)r->nchoices * sizeof *x->choice);
    x->n_choice = ds_arena_alloc(b->arena, (size_t)r->nchoices * sizeof *x->n_choice);
    x->choice_text = ds_arena_alloc(b->arena, (size_t)r->nchoices * sizeof *x->choice_text);
    if (!x->prompt || !x->choice || !x->n_choice || !x->choice_text) {
        rc = DS_ENOMEM;
        goto done;
    }
    for (int i = 0; i < r->nchoices && !rc; i++) {
        size_t tl = strlen(r->choice[i]);
        x->choice[i] = arena_ids(b->arena, ch[i].ids, (int)ch[i].n);
        x->n_choice[i] = (int)ch[i].n;
        x->choice_text[i] = ds_arena_alloc(b->arena, tl + 1);
        if (!x->choice[i] || !x->choice_text[i]) rc = DS_ENOMEM;
        else memcpy(x->choice_text[i], r->choice[i], tl + 1);
    }
done:
    seq_free(&p);
    for (int i = 0; ch && i < r->nchoices; i++) seq_free(&ch[i]);
    free(ch);
    return rc;
}

/* ---- loading ---- */

static int load_source(builder *b, encoder *e, const data_source *src, example_kind kind, const chat_template *tmpl,
                       const data_options *opt, long *records)
{
    ds_type type;
    bool cloze;
    int rc = ds_source_type(src, kind, &type, &cloze);
    if (rc) return rc;
    int base = 0;
    if (type == DT_MCQ && (rc = ds_answer_base(src, opt, &base))) return rc;
    jsonl_reader *r;
    if ((rc = jsonl_open(src->path, 0, &r))) return rc;
    ds_render_ctx ctx = {type, cloze, tmpl, kind, src->path, base};
    long taken = 0;
    for (;;) {
        if (src->limit > 0 && taken >= src->limit) break;
        json_t *obj;
        int line;
        rc = jsonl_next(r, &obj, &line);
        if (rc == DS_OK && !obj) break;
        ds_rendered rd;
        if (rc == DS_OK) {
            rc = ds_render_record(&ctx, obj, line, &rd);
            if (rc == DS_OK) {
                rc = kind == EX_SFT ? add_sft(b, e, &rd) : kind == EX_PREF ? add_pref(b, e, &rd) : add_mcq(b, e, &rd);
                if (rc && rc != DS_EINTERNAL) ds_fail_context(rc, "%s:%d: ", src->path, line);
                ds_rendered_free(&rd);
                if (rc == DS_OK) taken++;
            }
            json_decref(obj);
        }
        if (rc == DS_EDATA && opt->skip_bad_lines && jsonl_can_continue(r)) {
            b->d->skipped_lines++;
            continue;
        }
        if (rc) break;
    }
    *records += taken;
    jsonl_close(r);
    return rc;
}

int dataset_load(const data_source *src, int nsrc, example_kind kind, const tokenizer *tok, const data_options *opt,
                 dataset *out)
{
    memset(out, 0, sizeof *out);
    out->kind = kind;
    if (!tok) return ds_fail(DS_EINTERNAL, "dataset_load: no tokenizer");
    if (opt->sequence_len < 2) return ds_fail(DS_ECONFIG, "sequence_len %d is too small", opt->sequence_len);
    if (nsrc <= 0) return ds_fail(DS_ECONFIG, "no datasets given");
    const chat_template *tmpl;
    int rc = chat_template_open(opt->chat_template, opt->template_dir, &tmpl);
    if (rc) return rc;
    for (int i = 0; i < nsrc && !rc; i++) {      /* recipe mistakes before any reading */
        ds_type t;
        bool cloze;
        rc = ds_source_type(&src[i], kind, &t, &cloze);
    }
    out->storage = rc ? NULL : ds_arena_new();
    if (!rc && !out->storage) rc = DS_ENOMEM;
    if (rc) {
        chat_template_close(tmpl);
        return rc;
    }
    encoder e = {tok, tok_bos_id(tok), tok_eos_id(tok), tok_adds_bos(tok), opt->train_on_inputs, opt->vocab_size,
                 {0}, {0}};
    builder b = {out, out->storage, 0, opt->sequence_len};
    long records = 0;
    for (int i = 0; i < nsrc && !rc; i++) rc = load_source(&b, &e, &src[i], kind, tmpl, opt, &records);
    tok_ids_free(&e.scratch);
    ds_buf_free(&e.text);
    chat_template_close(tmpl);
    if (!rc && out->n == 0) {
        if (records == 0)
            rc = out->skipped_lines
                     ? ds_fail(DS_EDATA, "%s%s: no usable records (%ld bad lines skipped)", src[0].path,
                               nsrc > 1 ? " (and the other datasets)" : "", out->skipped_lines)
                     : ds_fail(DS_EDATA, "%s%s: no records", src[0].path, nsrc > 1 ? " (and the other datasets)" : "");
        else if (kind == EX_SFT)
            rc = ds_fail(DS_EDATA, "%s%s: no completion tokens left after truncation to sequence_len %d", src[0].path,
                         nsrc > 1 ? " (and the other datasets)" : "", opt->sequence_len);
        else
            rc = ds_fail(DS_EDATA, "%s%s: no examples fit sequence_len %d", src[0].path,
                         nsrc > 1 ? " (and the other datasets)" : "", opt->sequence_len);
    }
    if (rc) dataset_free(out);
    return rc;
}
