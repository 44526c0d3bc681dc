/* data/template/jinja_parse.c - tokens to an AST, with Jinja2's grammar:
 *
 *   expr    := or ["if" or ["else" expr]]
 *   or      := and ("or" and)*            and := not ("and" not)*
 *   not     := "not" not | compare        compare := math1 (cmp_op math1)*
 *   math1   := concat (("+"|"-") concat)*  concat := math2 ("~" math2)*
 *   math2   := pow (("*"|"/"|"//"|"%") pow)*   pow := unary ("**" unary)*
 *   unary   := ("-"|"+") unary | primary postfix* (filter | test | call)*
 *
 * Statements are in jinja_parse_stmt.c.
 */
#include "jinja_parse.h"

#include "core/status.h"

#include <stdlib.h>
#include <string.h>

const jtok *jp_cur(parser *p) { return &p->t[p->i]; }
const jtok *jp_peek(parser *p, int k) { return &p->t[p->i + k < p->n ? p->i + k : p->n - 1]; }

bool jp_is_op(const jtok *t, const char *op) { return t->kind == T_OP && t->n == strlen(op) && !memcmp(t->s, op, t->n); }
bool jp_is_name(const jtok *t, const char *name)
{
    return t->kind == T_NAME && t->n == strlen(name) && !memcmp(t->s, name, t->n);
}

static const char *tok_text(const jtok *t)
{
    switch (t->kind) {
    case T_EOF: return "the end of the template";
    case T_DATA: return "text";
    case T_VAR_BEGIN: return "'{{'";
    case T_VAR_END: return "'}}'";
    case T_BLOCK_BEGIN: return "'{%'";
    case T_BLOCK_END: return "'%}'";
    case T_STRING: return "a string";
    case T_INT: case T_FLOAT: return "a number";
    default: return NULL;
    }
}

jnode *jp_fail_at(parser *p, const jtok *t, const char *fmt, const char *what)
{
    jerr_set(p->e, t->line, t->col, fmt, what);
    return NULL;
}

jnode *jp_unexpected(parser *p)
{
    const jtok *t = jp_cur(p);
    const char *what = tok_text(t);
    if (what) return jp_fail_at(p, t, "unexpected %s", what);
    jerr_set(p->e, t->line, t->col, "unexpected '%.*s'", (int)t->n, t->s);
    return NULL;
}

bool jp_expect_op(parser *p, const char *op)
{
    if (jp_is_op(jp_cur(p), op)) {
        p->i++;
        return true;
    }
    const jtok *t = jp_cur(p);
    const char *what = tok_text(t);
    if (what) jerr_set(p->e, t->line, t->col, "expected '%s', found %s", op, what);
    else jerr_set(p->e, t->line, t->col, "expected '%s', found '%.*s'", op, (int)t->n, t->s);
    return false;
}

jnode *jp_node(parser *p, int kind, const jtok *at)
{
    jnode *n = jarena_alloc(p->a, sizeof *n);
    if (!n) return jp_fail_at(p, at, "%s", "out of memory");
    n->kind = (uint8_t)kind;
    n->line = at->line;
    n->col = at->col;
    return n;
}

const char *jp_name_copy(parser *p, const jtok *t)
{
    jstr *s = jv_newstr(p->a, t->s, t->n);
    return s ? s->s : NULL;
}


bool jp_nl_push(parser *p, nlist *l, jnode *x)
{
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 4;
        jnode **nv = jarena_alloc(p->a, (size_t)cap * sizeof *nv);
        if (!nv) {
            jerr_set(p->e, jp_cur(p)->line, jp_cur(p)->col, "out of memory");
            return false;
        }
        if (l->n) memcpy(nv, l->v, (size_t)l->n * sizeof *nv);
        l->v = nv;
        l->cap = cap;
    }
    l->v[l->n++] = x;
    return true;
}

jnode *jp_parse_expr(parser *p);
jnode *jp_parse_or(parser *p);
static jnode *parse_unary(parser *p, bool with_filter);
static jnode *parse_primary(parser *p);
static jnode *parse_postfix(parser *p, jnode *n);

/* Call arguments after '(' up to ')': positional into args, keywords into kw. */
static bool parse_args(parser *p, jnode *n)
{
    nlist args = {0}, kw = {0};
    const char **kwname = NULL;
    int kwcap = 0;
    while (!jp_is_op(jp_cur(p), ")")) {
        if (args.n + kw.n > 0 && !jp_expect_op(p, ",")) return false;
        if (jp_is_op(jp_cur(p), ")")) break;
        if (jp_is_op(jp_cur(p), "*") || jp_is_op(jp_cur(p), "**")) {
            jp_unexpected(p);
            return false;
        }
        if (jp_cur(p)->kind == T_NAME && jp_is_op(jp_peek(p, 1), "=")) {
            const jtok *name = jp_cur(p);
            p->i += 2;
            jnode *v = jp_parse_expr(p);
            if (!v || !jp_nl_push(p, &kw, v)) return false;
            if (kw.n > kwcap) {
                kwcap = kw.cap;
                const char **nk = jarena_alloc(p->a, (size_t)kwcap * sizeof *nk);
                if (!nk) return false;
                if (kwname) memcpy(nk, kwname, (size_t)(kw.n - 1) * sizeof *nk);
                kwname = nk;
            }
            kwname[kw.n - 1] = jp_name_copy(p, name);
        } else {
            if (kw.n) {
                jerr_set(p->e, jp_cur(p)->line, jp_cur(p)->col, "positional argument after a keyword argument");
                return false;
            }
            jnode *v = jp_parse_expr(p);
            if (!v || !jp_nl_push(p, &args, v)) return false;
        }
    }
    p->i++;
    n->args = args.v;
    n->nargs = args.n;
    n->kw = kw.v;
    n->kwname = kwname;
    n->nkw = kw.n;
    return true;
}

static jnode *parse_filter_expr(parser *p, jnode *n)
{
    for (;;) {
        const jtok *t = jp_cur(p);
        if (jp_is_op(t, "|")) {
            p->i++;
            if (jp_cur(p)->kind != T_NAME) return jp_unexpected(p);
            jnode *f = jp_node(p, N_FILTER, jp_cur(p));
            if (!f) return NULL;
            f->name = jp_name_copy(p, jp_cur(p));
            p->i++;
            f->a = n;
            if (jp_is_op(jp_cur(p), "(")) {
                p->i++;
                if (!parse_args(p, f)) return NULL;
            }
            n = f;
        } else if (jp_is_name(t, "is")) {
            p->i++;
            jnode *f = jp_node(p, N_TEST, t);
            if (!f) return NULL;
            if (jp_is_name(jp_cur(p), "not")) {
                f->op = 1;
                p->i++;
            }
            if (jp_cur(p)->kind != T_NAME) return jp_unexpected(p);
            f->name = jp_name_copy(p, jp_cur(p));
            p->i++;
            f->a = n;
            const jtok *u = jp_cur(p);
            if (jp_is_op(u, "(")) {
                p->i++;
                if (!parse_args(p, f)) return NULL;
            } else if ((u->kind == T_NAME || u->kind == T_STRING || u->kind == T_INT || u->kind == T_FLOAT ||
                        jp_is_op(u, "[") || jp_is_op(u, "{")) &&
                       !jp_is_name(u, "else") && !jp_is_name(u, "or") && !jp_is_name(u, "and")) {
                /* Jinja2's rule: any other name starts the test's one argument */
                if (jp_is_name(u, "is")) return jp_fail_at(p, u, "%s", "you cannot chain tests with 'is'");
                jnode *arg = parse_primary(p);
                if (arg) arg = parse_postfix(p, arg);
                if (!arg) return NULL;
                f->args = jarena_alloc(p->a, sizeof *f->args);
                if (!f->args) return jp_fail_at(p, u, "%s", "out of memory");
                f->args[0] = arg;
                f->nargs = 1;
            }
            n = f;
        } else if (jp_is_op(t, "(")) {
            p->i++;
            jnode *c = jp_node(p, N_CALL, t);
            if (!c) return NULL;
            c->a = n;
            if (!parse_args(p, c)) return NULL;
            n = c;
        } else {
            return n;
        }
    }
}

static jnode *parse_subscript(parser *p, jnode *obj, const jtok *at)
{
    jnode *parts[3] = {NULL, NULL, NULL};
    int k = 0;
    bool slice = false;
    for (;;) {
        if (!jp_is_op(jp_cur(p), ":") && !jp_is_op(jp_cur(p), "]")) {
            parts[k] = jp_parse_expr(p);
            if (!parts[k]) return NULL;
        }
        if (jp_is_op(jp_cur(p), ":") && k < 2) {
            slice = true;
            k++;
            p->i++;
            continue;
        }
        break;
    }
    if (!jp_expect_op(p, "]")) return NULL;
    jnode *n = jp_node(p, slice ? N_SLICE : N_ITEM, at);
    if (!n) return NULL;
    n->a = obj;
    if (!slice && !parts[0]) return jp_fail_at(p, at, "%s", "empty subscript");
    n->b = parts[0];
    n->c = parts[1];
    n->d = parts[2];
    return n;
}

static jnode *parse_postfix(parser *p, jnode *n)
{
    for (;;) {
        const jtok *t = jp_cur(p);
        if (jp_is_op(t, ".")) {
            p->i++;
            const jtok *u = jp_cur(p);
            if (u->kind == T_NAME) {
                jnode *a = jp_node(p, N_ATTR, t);
                if (!a) return NULL;
                a->a = n;
                a->name = jp_name_copy(p, u);
                a->name_n = u->n;
                p->i++;
                n = a;
            } else if (u->kind == T_INT) {
                jnode *a = jp_node(p, N_ITEM, t), *k = jp_node(p, N_CONST, u);
                if (!a || !k) return NULL;
                k->val = jv_int(u->i);
                a->a = n;
                a->b = k;
                p->i++;
                n = a;
            } else {
                return jp_unexpected(p);
            }
        } else if (jp_is_op(t, "[")) {
            p->i++;
            if (!(n = parse_subscript(p, n, t))) return NULL;
        } else if (jp_is_op(t, "(")) {
            p->i++;
            jnode *c = jp_node(p, N_CALL, t);
            if (!c) return NULL;
            c->a = n;
            if (!parse_args(p, c)) return NULL;
            n = c;
        } else {
            return n;
        }
    }
}

/* Items up to `close` into n->args (and dict values into n->kw). */
static bool parse_items(parser *p, jnode *n, const char *close, bool dict)
{
    nlist keys = {0}, vals = {0};
    while (!jp_is_op(jp_cur(p), close)) {
        if (keys.n && !jp_expect_op(p, ",")) return false;
        if (jp_is_op(jp_cur(p), close)) break;
        jnode *k = jp_parse_expr(p);
        if (!k || !jp_nl_push(p, &keys, k)) return false;
        if (dict) {
            if (!jp_expect_op(p, ":")) return false;
            jnode *v = jp_parse_expr(p);
            if (!v || !jp_nl_push(p, &vals, v)) return false;
        }
    }
    p->i++;
    n->args = keys.v;
    n->nargs = keys.n;
    n->kw = vals.v;
    n->nkw = vals.n;
    return true;
}

static jnode *parse_primary(parser *p)
{
    const jtok *t = jp_cur(p);
    jnode *n;
    if (t->kind == T_NAME) {
        n = jp_node(p, N_CONST, t);
        if (!n) return NULL;
        if (jp_is_name(t, "true") || jp_is_name(t, "True")) n->val = jv_bool(true);
        else if (jp_is_name(t, "false") || jp_is_name(t, "False")) n->val = jv_bool(false);
        else if (jp_is_name(t, "none") || jp_is_name(t, "None")) n->val = jv_none();
        else {
            n->kind = N_NAME;
            n->name = jp_name_copy(p, t);
            n->name_n = t->n;
        }
        p->i++;
        return n;
    }
    if (t->kind == T_STRING) {
        jbuf b = {0};
        while (jp_cur(p)->kind == T_STRING) {          /* adjacent strings join */
            jbuf_add(&b, jp_cur(p)->s, jp_cur(p)->n);   /* a failure sticks: b.oom */
            p->i++;
        }
        if (b.oom) {
            free(b.s);
            p->e->rc = DS_ENOMEM;   /* the message says why: core/mem.h */
            return jp_fail_at(p, t, "%s", "out of memory");
        }
        n = jp_node(p, N_CONST, t);
        if (n) n->val = jv_str(p->a, b.s ? b.s : "", b.n);
        free(b.s);
        if (n && n->val.kind != JV_STR) return jp_fail_at(p, t, "%s", "out of memory");
        return n;
    }
    if (t->kind == T_INT || t->kind == T_FLOAT) {
        n = jp_node(p, N_CONST, t);
        if (n) n->val = t->kind == T_INT ? jv_int(t->i) : jv_float(t->f);
        p->i++;
        return n;
    }
    if (jp_is_op(t, "(")) {
        p->i++;
        if (jp_is_op(jp_cur(p), ")")) {
            p->i++;
            n = jp_node(p, N_TUPLE, t);
            return n;
        }
        jnode *first = jp_parse_expr(p);
        if (!first) return NULL;
        if (!jp_is_op(jp_cur(p), ",")) return jp_expect_op(p, ")") ? first : NULL;
        n = jp_node(p, N_TUPLE, t);
        if (!n) return NULL;
        nlist items = {0};
        if (!jp_nl_push(p, &items, first)) return NULL;
        while (jp_is_op(jp_cur(p), ",")) {
            p->i++;
            if (jp_is_op(jp_cur(p), ")")) break;
            jnode *x = jp_parse_expr(p);
            if (!x || !jp_nl_push(p, &items, x)) return NULL;
        }
        if (!jp_expect_op(p, ")")) return NULL;
        n->args = items.v;
        n->nargs = items.n;
        return n;
    }
    if (jp_is_op(t, "[") || jp_is_op(t, "{")) {
        bool dict = jp_is_op(t, "{");
        p->i++;
        n = jp_node(p, dict ? N_DICT : N_LIST, t);
        if (!n || !parse_items(p, n, dict ? "}" : "]", dict)) return NULL;
        return n;
    }
    return jp_unexpected(p);
}

static jnode *parse_unary(parser *p, bool with_filter)
{
    const jtok *t = jp_cur(p);
    jnode *n;
    if (++p->depth > MAX_NESTING) return jp_fail_at(p, t, "%s", "expression nested too deeply");
    if (jp_is_op(t, "-") || jp_is_op(t, "+")) {
        p->i++;
        jnode *x = parse_unary(p, false);
        if (!x) return NULL;
        n = jp_node(p, jp_is_op(t, "-") ? N_NEG : N_POS, t);
        if (n) n->a = x;
    } else {
        n = parse_primary(p);
        if (n) n = parse_postfix(p, n);
    }
    if (n && with_filter) n = parse_filter_expr(p, n);
    p->depth--;
    return n;
}

static jnode *binary(parser *p, const jtok *at, int kind, int op, jnode *l, jnode *r)
{
    if (!r) return NULL;
    jnode *n = jp_node(p, kind, at);
    if (!n) return NULL;
    n->op = op;
    n->a = l;
    n->b = r;
    return n;
}

static jnode *parse_pow(parser *p)
{
    jnode *l = parse_unary(p, true);
    while (l && jp_is_op(jp_cur(p), "**")) {
        const jtok *t = jp_cur(p);
        p->i++;
        l = binary(p, t, N_BIN, OP_POW, l, parse_unary(p, true));
    }
    return l;
}

static jnode *parse_math2(parser *p)
{
    jnode *l = parse_pow(p);
    for (;;) {
        const jtok *t = jp_cur(p);
        int op = jp_is_op(t, "*") ? OP_MUL : jp_is_op(t, "/") ? OP_DIV : jp_is_op(t, "//") ? OP_FLOORDIV
                 : jp_is_op(t, "%") ? OP_MOD : 0;
        if (!l || !op) return l;
        p->i++;
        l = binary(p, t, N_BIN, op, l, parse_pow(p));
    }
}

static jnode *parse_concat(parser *p)
{
    jnode *l = parse_math2(p);
    while (l && jp_is_op(jp_cur(p), "~")) {
        const jtok *t = jp_cur(p);
        p->i++;
        l = binary(p, t, N_BIN, OP_CONCAT, l, parse_math2(p));
    }
    return l;
}

static jnode *parse_math1(parser *p)
{
    jnode *l = parse_concat(p);
    for (;;) {
        const jtok *t = jp_cur(p);
        int op = jp_is_op(t, "+") ? OP_ADD : jp_is_op(t, "-") ? OP_SUB : 0;
        if (!l || !op) return l;
        p->i++;
        l = binary(p, t, N_BIN, op, l, parse_concat(p));
    }
}

static jnode *parse_compare(parser *p)
{
    const jtok *start = jp_cur(p);
    jnode *first = parse_math1(p);
    if (!first) return NULL;
    nlist operands = {0};
    int ops[64], nops = 0;
    for (;;) {
        const jtok *t = jp_cur(p);
        int op = jp_is_op(t, "==") ? OP_EQ : jp_is_op(t, "!=") ? OP_NE : jp_is_op(t, "<") ? OP_LT : jp_is_op(t, "<=") ? OP_LE
                 : jp_is_op(t, ">") ? OP_GT : jp_is_op(t, ">=") ? OP_GE : jp_is_name(t, "in") ? OP_IN
                 : (jp_is_name(t, "not") && jp_is_name(jp_peek(p, 1), "in")) ? OP_NOTIN : 0;
        if (!op) break;
        if (nops == 64) return jp_fail_at(p, t, "%s", "too many chained comparisons");
        p->i += op == OP_NOTIN ? 2 : 1;
        jnode *r = parse_math1(p);
        if (!r || !jp_nl_push(p, &operands, r)) return NULL;
        ops[nops++] = op;
    }
    if (!nops) return first;
    jnode *n = jp_node(p, N_COMPARE, start);
    if (!n) return NULL;
    n->a = first;
    n->args = operands.v;
    n->nargs = operands.n;
    n->ops = jarena_alloc(p->a, (size_t)nops * sizeof *n->ops);
    if (!n->ops) return jp_fail_at(p, start, "%s", "out of memory");
    memcpy(n->ops, ops, (size_t)nops * sizeof *ops);
    return n;
}

static jnode *parse_not(parser *p)
{
    const jtok *t = jp_cur(p);
    if (jp_is_name(t, "not")) {
        p->i++;
        if (++p->depth > MAX_NESTING) return jp_fail_at(p, t, "%s", "expression nested too deeply");
        jnode *x = parse_not(p);
        p->depth--;
        if (!x) return NULL;
        jnode *n = jp_node(p, N_NOT, t);
        if (n) n->a = x;
        return n;
    }
    return parse_compare(p);
}

static jnode *parse_and(parser *p)
{
    jnode *l = parse_not(p);
    while (l && jp_is_name(jp_cur(p), "and")) {
        const jtok *t = jp_cur(p);
        p->i++;
        l = binary(p, t, N_AND, 0, l, parse_not(p));
    }
    return l;
}

jnode *jp_parse_or(parser *p)
{
    jnode *l = parse_and(p);
    while (l && jp_is_name(jp_cur(p), "or")) {
        const jtok *t = jp_cur(p);
        p->i++;
        l = binary(p, t, N_OR, 0, l, parse_and(p));
    }
    return l;
}

jnode *jp_parse_expr(parser *p)
{
    if (++p->depth > MAX_NESTING) return jp_fail_at(p, jp_cur(p), "%s", "expression nested too deeply");
    jnode *n = jp_parse_or(p);
    while (n && jp_is_name(jp_cur(p), "if")) {
        const jtok *t = jp_cur(p);
        p->i++;
        jnode *c = jp_node(p, N_COND, t);
        if (!c || !(c->a = jp_parse_or(p))) return NULL;
        c->b = n;
        if (jp_is_name(jp_cur(p), "else")) {
            p->i++;
            if (!(c->c = jp_parse_expr(p))) return NULL;
        }
        n = c;
    }
    p->depth--;
    return n;
}

