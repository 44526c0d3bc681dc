/* data/template/jinja_eval.c - rendering: statements, expressions, scopes.
 *
 * Scopes follow Jinja2: the template's top level is one scope (render
 * variables, then its own `set`s); each iteration of a for loop and each
 * macro call gets a fresh child scope, so a `set` inside a loop is gone
 * after it (which is why templates carry state in a namespace()). `if`
 * makes no scope. Undefined values are Jinja2's default Undefined: they
 * print as '', are false, iterate as empty, and compare unequal to
 * anything defined; using one in arithmetic, calling it or taking its
 * attribute or item is an error naming what was undefined.
 */
#include "jinja_internal.h"

#include "core/mem.h"
#include "core/status.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct jscope {
    jscope *parent;
    int n, cap;
    const char **name;
    jv *val;
};

enum { FLOW_OK = 0, FLOW_BREAK = 1, FLOW_CONTINUE = 2, FLOW_ERR = -1 };

int jfail(jrun *r, const jnode *at, const char *fmt, ...)
{
    char msg[480];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (!r->e->rc) jerr_set(r->e, at ? at->line : 0, at ? at->col : 0, "%s", msg);
    return -1;
}

int jfail_oom(jrun *r, const jnode *at)
{
    if (!r->e->rc) {
        bool limit = !r->a->oom && r->a->limit && r->a->used > r->a->limit / 2;
        jerr_set(r->e, at ? at->line : 0, at ? at->col : 0,
                 limit ? "the render needs more than %zu bytes of memory" : "out of memory (%zu bytes in use)",
                 limit ? r->a->limit : r->a->used);
        if (!limit) r->e->rc = DS_ENOMEM;
    }
    return -1;
}

int jv_as_text(jrun *r, const jnode *at, jv v, const jstr **out)
{
    if (v.kind == JV_STR) {
        *out = v.u.s;
        return 0;
    }
    jbuf b = {0};
    if (!jv_to_str(&b, v)) {
        free(b.s);
        return jfail_oom(r, at);
    }
    *out = jv_newstr(r->a, b.s ? b.s : "", b.n);
    free(b.s);
    return *out ? 0 : jfail_oom(r, at);
}

/* ---- scopes ---- */

static jscope *scope_new(jrun *r, jscope *parent)
{
    jscope *s = jarena_alloc(r->a, sizeof *s);
    if (s) s->parent = parent;
    return s;
}

static const jv *scope_find(const jscope *s, const char *name)
{
    for (; s; s = s->parent)
        for (int i = s->n - 1; i >= 0; i--)
            if (strcmp(s->name[i], name) == 0) return &s->val[i];
    return NULL;
}

static int scope_set(jrun *r, const jnode *at, jscope *s, const char *name, jv v)
{
    for (int i = 0; i < s->n; i++)
        if (strcmp(s->name[i], name) == 0) {
            s->val[i] = v;
            return 0;
        }
    if (s->n == s->cap) {
        int cap = s->cap ? 2 * s->cap : 8;
        const char **nn = jarena_alloc(r->a, (size_t)cap * sizeof *nn);
        jv *nv = jarena_alloc(r->a, (size_t)cap * sizeof *nv);
        if (!nn || !nv) return jfail_oom(r, at);
        if (s->n) {
            memcpy(nn, s->name, (size_t)s->n * sizeof *nn);
            memcpy(nv, s->val, (size_t)s->n * sizeof *nv);
        }
        s->name = nn;
        s->val = nv;
        s->cap = cap;
    }
    s->name[s->n] = name;
    s->val[s->n] = v;
    s->n++;
    return 0;
}

static int step(jrun *r, const jnode *at)
{
    if (++r->steps > r->max_steps) return jfail(r, at, "the render takes more than %ld steps", r->max_steps);
    if (r->depth > r->max_depth) return jfail(r, at, "the render nests deeper than %d levels", r->max_depth);
    return 0;
}

static int eval(jrun *r, const jnode *n, jscope *sc, jv *out);
static int exec(jrun *r, const jnode *n, jscope *sc);

/* Evaluate positional and keyword arguments. */
static int eval_args(jrun *r, const jnode *n, jscope *sc, jv **args, jv **kwv)
{
    *args = n->nargs ? jarena_alloc(r->a, (size_t)n->nargs * sizeof **args) : NULL;
    *kwv = n->nkw ? jarena_alloc(r->a, (size_t)n->nkw * sizeof **kwv) : NULL;
    if ((n->nargs && !*args) || (n->nkw && !*kwv)) return jfail_oom(r, n);
    for (int i = 0; i < n->nargs; i++)
        if (eval(r, n->args[i], sc, &(*args)[i])) return -1;
    for (int i = 0; i < n->nkw; i++)
        if (eval(r, n->kw[i], sc, &(*kwv)[i])) return -1;
    return 0;
}

/* Render `body` into a string (block set, macro calls). */
static int capture(jrun *r, const jnode *body, jscope *sc, jv *out)
{
    jbuf saved = r->out;
    r->out = (jbuf){.max = saved.max > saved.n ? saved.max - saved.n : 1};
    int rc = exec(r, body, sc);
    jbuf got = r->out;
    r->out = saved;
    if (rc == FLOW_ERR) {
        free(got.s);
        return -1;
    }
    if (got.over || got.oom) {
        free(got.s);
        return got.oom ? jfail_oom(r, body) : jfail(r, body, "the output passes %zu bytes", saved.max);
    }
    *out = jv_str(r->a, got.s ? got.s : "", got.n);
    free(got.s);
    return out->kind == JV_STR ? 0 : jfail_oom(r, body);
}

static int call_macro(jrun *r, const jnode *at, const jnode *m, const jv *args, int nargs, const char **kwn,
                      const jv *kwv, int nkw, jv *out)
{
    if (nargs > m->ntargets) return jfail(r, at, "macro '%s' takes %d arguments, %d given", m->name, m->ntargets, nargs);
    jscope *sc = scope_new(r, r->root);
    if (!sc) return jfail_oom(r, at);
    for (int k = 0; k < nkw; k++) {
        bool known = false;
        for (int i = 0; i < m->ntargets; i++) known |= strcmp(m->targets[i], kwn[k]) == 0;
        if (!known) return jfail(r, at, "macro '%s' has no parameter '%s'", m->name, kwn[k]);
    }
    for (int i = 0; i < m->ntargets; i++) {
        jv v = jv_undef(m->targets[i]);
        bool set = false;
        if (i < nargs) {
            v = args[i];
            set = true;
        }
        for (int k = 0; k < nkw; k++)
            if (strcmp(m->targets[i], kwn[k]) == 0) {
                if (set) return jfail(r, at, "macro '%s' got parameter '%s' twice", m->name, kwn[k]);
                v = kwv[k];
                set = true;
            }
        if (!set && m->kw[i] && eval(r, m->kw[i], sc, &v)) return -1;
        if (scope_set(r, at, sc, m->targets[i], v)) return -1;
    }
    if (++r->depth > r->max_depth) return jfail(r, at, "macro calls nest deeper than %d levels", r->max_depth);
    int rc = capture(r, m->a, sc, out);
    r->depth--;
    return rc;
}

static int eval_call(jrun *r, const jnode *n, jscope *sc, jv *out)
{
    jv f, *args, *kwv;
    if (eval(r, n->a, sc, &f)) return -1;
    if (f.kind == JV_UNDEF)
        return jfail(r, n, "'%s' is undefined and cannot be called", f.u.undef ? f.u.undef : "the value");
    if (eval_args(r, n, sc, &args, &kwv)) return -1;
    if (f.kind == JV_MACRO) return call_macro(r, n, f.u.macro, args, n->nargs, n->kwname, kwv, n->nkw, out);
    return jb_call(r, n, f, args, n->nargs, n->kwname, kwv, n->nkw, out);
}

static int eval_compare(jrun *r, const jnode *n, jscope *sc, jv *out)
{
    jv left;
    if (eval(r, n->a, sc, &left)) return -1;
    for (int i = 0; i < n->nargs; i++) {
        jv right;
        bool ok;
        if (eval(r, n->args[i], sc, &right) || jb_compare(r, n, n->ops[i], left, right, &ok)) return -1;
        if (!ok) {
            *out = jv_bool(false);
            return 0;
        }
        left = right;
    }
    *out = jv_bool(true);
    return 0;
}

static int eval_items(jrun *r, const jnode *n, jscope *sc, jv *out)
{
    if (n->kind == N_DICT) {
        jdict *d = jv_newdict(r->a, (size_t)n->nargs);
        if (!d) return jfail_oom(r, n);
        for (int i = 0; i < n->nargs; i++) {
            jv k, v;
            if (eval(r, n->args[i], sc, &k) || eval(r, n->kw[i], sc, &v)) return -1;
            if (k.kind == JV_LIST || k.kind == JV_DICT || k.kind == JV_NS) return jfail(r, n, "unhashable dict key");
            if (jv_dict_set(r->a, d, k, v)) return jfail_oom(r, n);
        }
        out->kind = JV_DICT;
        out->u.d = d;
        return 0;
    }
    jlist *l = jv_newlist(r->a, (size_t)n->nargs);
    if (!l) return jfail_oom(r, n);
    for (int i = 0; i < n->nargs; i++)
        if (eval(r, n->args[i], sc, &l->v[i])) return -1;
    l->tuple = n->kind == N_TUPLE;
    out->kind = JV_LIST;
    out->u.l = l;
    return 0;
}

static int eval(jrun *r, const jnode *n, jscope *sc, jv *out)
{
    r->depth++;
    int rc = step(r, n);
    jv a, b, c, d, *args, *kwv;
    if (rc) goto done;
    switch (n->kind) {
    case N_CONST: *out = n->val; break;
    case N_NAME: {
        const jv *v = scope_find(sc, n->name);
        if (v) *out = *v;
        else if (!jb_global(n->name, n->name_n, out)) *out = jv_undef(n->name);
        break;
    }
    case N_ATTR:
        rc = eval(r, n->a, sc, &a);
        if (!rc) rc = jb_getattr(r, n, a, n->name, n->name_n, out);
        break;
    case N_ITEM:
        rc = eval(r, n->a, sc, &a);
        if (!rc) rc = eval(r, n->b, sc, &b);
        if (!rc) rc = jb_getitem(r, n, a, b, out);
        break;
    case N_SLICE:
        b = c = d = jv_none();
        rc = eval(r, n->a, sc, &a);
        if (!rc && n->b) rc = eval(r, n->b, sc, &b);
        if (!rc && n->c) rc = eval(r, n->c, sc, &c);
        if (!rc && n->d) rc = eval(r, n->d, sc, &d);
        if (!rc) rc = jb_slice(r, n, a, b, c, d, out);
        break;
    case N_CALL: rc = eval_call(r, n, sc, out); break;
    case N_FILTER:
        rc = eval(r, n->a, sc, &a);
        if (!rc) rc = eval_args(r, n, sc, &args, &kwv);
        if (!rc) rc = jb_filter(r, n, n->name, a, args, n->nargs, n->kwname, kwv, n->nkw, out);
        break;
    case N_TEST: {
        bool res;
        rc = eval(r, n->a, sc, &a);
        if (!rc) rc = eval_args(r, n, sc, &args, &kwv);
        if (!rc && n->nkw) rc = jfail(r, n, "test '%s' takes no keyword arguments", n->name);
        if (!rc) rc = jb_test(r, n, n->name, a, args, n->nargs, &res);
        if (!rc) *out = jv_bool(n->op ? !res : res);
        break;
    }
    case N_NEG: case N_POS:
        rc = eval(r, n->a, sc, &a);
        if (!rc) rc = jb_binop(r, n, n->kind == N_NEG ? OP_SUB : OP_ADD, jv_int(0), a, out);
        break;
    case N_NOT:
        rc = eval(r, n->a, sc, &a);
        if (!rc) *out = jv_bool(!jv_truthy(a));
        break;
    case N_AND: case N_OR:
        rc = eval(r, n->a, sc, &a);
        if (!rc && jv_truthy(a) == (n->kind == N_AND)) rc = eval(r, n->b, sc, &a);
        if (!rc) *out = a;
        break;
    case N_BIN:
        rc = eval(r, n->a, sc, &a);
        if (!rc) rc = eval(r, n->b, sc, &b);
        if (!rc) rc = jb_binop(r, n, n->op, a, b, out);
        break;
    case N_COMPARE: rc = eval_compare(r, n, sc, out); break;
    case N_COND:
        rc = eval(r, n->a, sc, &a);
        if (!rc) {
            if (jv_truthy(a)) rc = eval(r, n->b, sc, out);
            else if (n->c) rc = eval(r, n->c, sc, out);
            else *out = jv_undef("the missing else branch");
        }
        break;
    case N_LIST: case N_TUPLE: case N_DICT: rc = eval_items(r, n, sc, out); break;
    default: rc = jfail(r, n, "internal: not an expression (%d)", n->kind);
    }
done:
    r->depth--;
    return rc ? -1 : 0;
}

/* ---- statements ---- */

static int output(jrun *r, const jnode *at, const char *s, size_t n)
{
    if (jbuf_add(&r->out, s, n)) return 0;
    return r->out.max && r->out.n + n > r->out.max ? jfail(r, at, "the output passes %zu bytes", r->out.max)
                                                  : jfail_oom(r, at);
}

static int bind_targets(jrun *r, const jnode *n, jscope *sc, jv item)
{
    if (n->ntargets == 1) return scope_set(r, n, sc, n->targets[0], item);
    if (item.kind != JV_LIST) return jfail(r, n, "cannot unpack a %s into %d loop variables", jv_type_name(item), n->ntargets);
    if (item.u.l->n != (size_t)n->ntargets)
        return jfail(r, n, "cannot unpack %zu values into %d loop variables", item.u.l->n, n->ntargets);
    for (int i = 0; i < n->ntargets; i++)
        if (scope_set(r, n, sc, n->targets[i], item.u.l->v[i])) return -1;
    return 0;
}

static int exec_for(jrun *r, const jnode *n, jscope *sc)
{
    jv it;
    jlist *items;
    if (eval(r, n->a, sc, &it) || jb_iter(r, n, it, &items)) return FLOW_ERR;
    if (n->b) {                                  /* the loop's "if": filter first, so loop.length counts what stays */
        jlist *kept = jv_newlist(r->a, items->n);
        if (!kept) return jfail_oom(r, n);
        kept->n = 0;
        for (size_t i = 0; i < items->n; i++) {
            jscope *fs = scope_new(r, sc);
            jv ok;
            if (!fs || bind_targets(r, n, fs, items->v[i]) || eval(r, n->b, fs, &ok)) return FLOW_ERR;
            if (jv_truthy(ok)) kept->v[kept->n++] = items->v[i];
        }
        items = kept;
    }
    for (size_t i = 0; i < items->n; i++) {
        jscope *is = scope_new(r, sc);
        jloop *lp = jarena_alloc(r->a, sizeof *lp);
        if (!is || !lp) return jfail_oom(r, n);
        lp->index0 = (int64_t)i;
        lp->length = (int64_t)items->n;
        lp->prev = i > 0 ? items->v[i - 1] : jv_undef("loop.previtem");
        lp->next = i + 1 < items->n ? items->v[i + 1] : jv_undef("loop.nextitem");
        jv loopv = {.kind = JV_LOOP};
        loopv.u.loop = lp;
        if (bind_targets(r, n, is, items->v[i]) || scope_set(r, n, is, "loop", loopv)) return FLOW_ERR;
        int rc = exec(r, n->c, is);
        if (rc == FLOW_ERR) return FLOW_ERR;
        if (rc == FLOW_BREAK) break;
    }
    if (items->n == 0 && n->d) return exec(r, n->d, sc);
    return FLOW_OK;
}

static int exec(jrun *r, const jnode *n, jscope *sc)
{
    r->depth++;
    int rc = step(r, n) ? FLOW_ERR : FLOW_OK;
    jv v;
    if (rc) goto done;
    switch (n->kind) {
    case N_BLOCK:
        for (int i = 0; i < n->nargs && rc == FLOW_OK; i++) rc = exec(r, n->args[i], sc);
        break;
    case N_TEXT: rc = output(r, n, n->name, n->name_n); break;
    case N_OUTPUT: {
        if (eval(r, n->a, sc, &v)) {
            rc = FLOW_ERR;
            break;
        }
        const jstr *text;
        rc = v.kind == JV_UNDEF ? FLOW_OK : jv_as_text(r, n, v, &text) ? FLOW_ERR : output(r, n, text->s, text->n);
        break;
    }
    case N_IF:
        if (eval(r, n->a, sc, &v)) rc = FLOW_ERR;
        else if (jv_truthy(v)) rc = exec(r, n->b, sc);
        else if (n->c) rc = exec(r, n->c, sc);
        break;
    case N_FOR: rc = exec_for(r, n, sc); break;
    case N_SET:
        rc = eval(r, n->a, sc, &v) || scope_set(r, n, sc, n->name, v) ? FLOW_ERR : FLOW_OK;
        break;
    case N_SET_BLOCK:
        rc = capture(r, n->a, sc, &v) || scope_set(r, n, sc, n->name, v) ? FLOW_ERR : FLOW_OK;
        break;
    case N_SET_ATTR: {
        const jv *ns = scope_find(sc, n->name);
        if (!ns || ns->kind != JV_NS) {
            rc = jfail(r, n, "cannot assign attribute '%s' of '%s': it is not a namespace()", n->attr, n->name);
            break;
        }
        jv key = jv_str(r->a, n->attr, strlen(n->attr));
        if (key.kind != JV_STR || eval(r, n->a, sc, &v)) rc = key.kind != JV_STR ? jfail_oom(r, n) : FLOW_ERR;
        else if (jv_dict_set(r->a, ns->u.d, key, v)) rc = jfail_oom(r, n);
        break;
    }
    case N_MACRO:
        v = (jv){.kind = JV_MACRO};
        v.u.macro = n;
        rc = scope_set(r, n, sc, n->name, v) ? FLOW_ERR : FLOW_OK;
        break;
    case N_BREAK: rc = FLOW_BREAK; break;
    case N_CONTINUE: rc = FLOW_CONTINUE; break;
    default: rc = jfail(r, n, "internal: not a statement (%d)", n->kind);
    }
done:
    r->depth--;
    return rc;
}

/* ---- templates ---- */

struct jinja_template {
    char *name;
    jarena arena;
    jnode *root;
};

int jinja_compile(const char *src, size_t n, const char *name, jinja_template **out)
{
    *out = NULL;
    jinja_template *t = ds_calloc(1, sizeof *t, "a template");
    if (!t || !(t->name = ds_strdup(name ? name : "template"))) {
        free(t);
        return DS_ENOMEM;
    }
    jerr e = {.name = t->name};
    jtok *toks;
    int ntoks;
    if (jinja_lex(src, n, &t->arena, &e, &toks, &ntoks) || jinja_parse_tokens(toks, ntoks, &t->arena, &e, &t->root)) {
        /* the arena has no limit here: a failed allocation is out of memory */
        int rc = ds_fail(t->arena.oom ? DS_ENOMEM : e.rc ? e.rc : DS_EDATA, "%s", e.msg);
        jinja_free(t);
        return rc;
    }
    *out = t;
    return DS_OK;
}

void jinja_free(jinja_template *t)
{
    if (!t) return;
    jarena_free(&t->arena);
    free(t->name);
    free(t);
}

const char *jinja_name(const jinja_template *t) { return t->name; }

int jinja_render(const jinja_template *t, const json_t *vars, const jinja_limits *lim, char **out, size_t *out_len)
{
    *out = NULL;
    if (out_len) *out_len = 0;
    jinja_limits L = lim ? *lim : (jinja_limits){0};
    jarena a = {.limit = L.max_memory ? L.max_memory : (size_t)512 << 20};
    jerr e = {.name = t->name};
    jrun r = {.a = &a, .e = &e, .max_steps = L.max_steps > 0 ? L.max_steps : 100000000L,
              .max_depth = L.max_depth > 0 ? L.max_depth : 200, .now = L.now};
    r.out.max = L.max_output ? L.max_output : (size_t)64 << 20;
    int rc = DS_OK;
    r.root = scope_new(&r, NULL);
    if (!r.root) rc = ds_fail_context(DS_ENOMEM, "%s: ", t->name);
    if (!rc && vars && !json_is_object(vars)) rc = ds_fail(DS_EINTERNAL, "%s: render variables must be an object", t->name);
    if (!rc && vars) {
        const char *key;
        json_t *v;
        json_object_foreach((json_t *)vars, key, v) {
            jv val;
            jstr *name = jv_newstr(&a, key, strlen(key));
            int jr = name ? jv_from_json(&a, v, 0, &val) : DS_EINTERNAL;
            if (jr || scope_set(&r, NULL, r.root, name->s, val)) {
                rc = a.oom ? ds_fail_context(DS_ENOMEM, "%s: variable '%s': ", t->name, key)
                           : ds_fail(jr == DS_EDATA ? DS_EDATA : DS_EINTERNAL, "%s: variable '%s' is %s", t->name,
                                     key, jr == DS_EDATA ? "nested too deeply" : "too large for memory");
                break;
            }
        }
    }
    if (!rc) {
        int flow = exec(&r, t->root, r.root);
        if (flow == FLOW_ERR) rc = ds_fail(a.oom ? DS_ENOMEM : e.rc ? e.rc : DS_EDATA, "%s", e.msg);
        else if (flow != FLOW_OK) rc = ds_fail(DS_EDATA, "%s: '{%% break %%}' or '{%% continue %%}' outside a loop", t->name);
    }
    jarena_free(&a);
    if (rc) {
        free(r.out.s);
        return rc;
    }
    if (!r.out.s && !(r.out.s = ds_calloc(1, 1, "a template's output"))) return DS_ENOMEM;
    *out = r.out.s;
    if (out_len) *out_len = r.out.n;
    return DS_OK;
}
