/* data/template/jinja_parse.c - tokens to an AST, with Jinja2's grammar:
 *
 *   expr    := or ["if" or ["else" expr]]
 *   or      := and ("or" and)*            and := not ("and" not)*
 *   not     := "not" not | compare        compare := math1 (cmp_op math1)*
 *   math1   := concat (("+"|"-") concat)*  concat := math2 ("~" math2)*
 *   math2   := pow (("*"|"/"|"//"|"%") pow)*   pow := unary ("**" unary)*
 *   unary   := ("-"|"+") unary | primary postfix* (filter | test | call)*
 *
 * Statements: if/elif/else, for (targets, "if" filter, else), set (name,
 * namespace attribute, block), macro, break, continue, generation. Other
 * tags are refused by name.
 */
#include "jinja_internal.h"

#include "core/status.h"

#include <string.h>

typedef struct {
    const jtok *t;
    int n, i;
    jarena *a;
    jerr *e;
    int depth;
} parser;

#define MAX_NESTING 200

static const jtok *cur(parser *p) { return &p->t[p->i]; }
static const jtok *peek(parser *p, int k) { return &p->t[p->i + k < p->n ? p->i + k : p->n - 1]; }

static bool is_op(const jtok *t, const char *op) { return t->kind == T_OP && t->n == strlen(op) && !memcmp(t->s, op, t->n); }
static bool is_name(const jtok *t, const char *name)
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

static jnode *fail_at(parser *p, const jtok *t, const char *fmt, const char *what)
{
    jerr_set(p->e, t->line, t->col, fmt, what);
    return NULL;
}

static jnode *unexpected(parser *p)
{
    const jtok *t = cur(p);
    const char *what = tok_text(t);
    if (what) return fail_at(p, t, "unexpected %s", what);
    jerr_set(p->e, t->line, t->col, "unexpected '%.*s'", (int)t->n, t->s);
    return NULL;
}

static bool expect_op(parser *p, const char *op)
{
    if (is_op(cur(p), op)) {
        p->i++;
        return true;
    }
    const jtok *t = cur(p);
    const char *what = tok_text(t);
    if (what) jerr_set(p->e, t->line, t->col, "expected '%s', found %s", op, what);
    else jerr_set(p->e, t->line, t->col, "expected '%s', found '%.*s'", op, (int)t->n, t->s);
    return false;
}

static jnode *node(parser *p, int kind, const jtok *at)
{
    jnode *n = jarena_alloc(p->a, sizeof *n);
    if (!n) return fail_at(p, at, "%s", "out of memory");
    n->kind = (uint8_t)kind;
    n->line = at->line;
    n->col = at->col;
    return n;
}

static const char *name_copy(parser *p, const jtok *t)
{
    jstr *s = jv_newstr(p->a, t->s, t->n);
    return s ? s->s : NULL;
}

/* A growable node list in the arena. */
typedef struct { jnode **v; int n, cap; } nlist;

static bool nl_push(parser *p, nlist *l, jnode *x)
{
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 4;
        jnode **nv = jarena_alloc(p->a, (size_t)cap * sizeof *nv);
        if (!nv) {
            jerr_set(p->e, cur(p)->line, cur(p)->col, "out of memory");
            return false;
        }
        if (l->n) memcpy(nv, l->v, (size_t)l->n * sizeof *nv);
        l->v = nv;
        l->cap = cap;
    }
    l->v[l->n++] = x;
    return true;
}

static jnode *parse_expr(parser *p);
static jnode *parse_or(parser *p);
static jnode *parse_unary(parser *p, bool with_filter);
static jnode *parse_primary(parser *p);
static jnode *parse_postfix(parser *p, jnode *n);

/* Call arguments after '(' up to ')': positional into args, keywords into kw. */
static bool parse_args(parser *p, jnode *n)
{
    nlist args = {0}, kw = {0};
    const char **kwname = NULL;
    int kwcap = 0;
    while (!is_op(cur(p), ")")) {
        if (args.n + kw.n > 0 && !expect_op(p, ",")) return false;
        if (is_op(cur(p), ")")) break;
        if (is_op(cur(p), "*") || is_op(cur(p), "**")) {
            unexpected(p);
            return false;
        }
        if (cur(p)->kind == T_NAME && is_op(peek(p, 1), "=")) {
            const jtok *name = cur(p);
            p->i += 2;
            jnode *v = parse_expr(p);
            if (!v || !nl_push(p, &kw, v)) return false;
            if (kw.n > kwcap) {
                kwcap = kw.cap;
                const char **nk = jarena_alloc(p->a, (size_t)kwcap * sizeof *nk);
                if (!nk) return false;
                if (kwname) memcpy(nk, kwname, (size_t)(kw.n - 1) * sizeof *nk);
                kwname = nk;
            }
            kwname[kw.n - 1] = name_copy(p, name);
        } else {
            if (kw.n) {
                jerr_set(p->e, cur(p)->line, cur(p)->col, "positional argument after a keyword argument");
                return false;
            }
            jnode *v = parse_expr(p);
            if (!v || !nl_push(p, &args, v)) return false;
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
        const jtok *t = cur(p);
        if (is_op(t, "|")) {
            p->i++;
            if (cur(p)->kind != T_NAME) return unexpected(p);
            jnode *f = node(p, N_FILTER, cur(p));
            if (!f) return NULL;
            f->name = name_copy(p, cur(p));
            p->i++;
            f->a = n;
            if (is_op(cur(p), "(")) {
                p->i++;
                if (!parse_args(p, f)) return NULL;
            }
            n = f;
        } else if (is_name(t, "is")) {
            p->i++;
            jnode *f = node(p, N_TEST, t);
            if (!f) return NULL;
            if (is_name(cur(p), "not")) {
                f->op = 1;
                p->i++;
            }
            if (cur(p)->kind != T_NAME) return unexpected(p);
            f->name = name_copy(p, cur(p));
            p->i++;
            f->a = n;
            const jtok *u = cur(p);
            if (is_op(u, "(")) {
                p->i++;
                if (!parse_args(p, f)) return NULL;
            } else if ((u->kind == T_NAME || u->kind == T_STRING || u->kind == T_INT || u->kind == T_FLOAT ||
                        is_op(u, "[") || is_op(u, "{")) &&
                       !is_name(u, "else") && !is_name(u, "or") && !is_name(u, "and")) {
                /* Jinja2's rule: any other name starts the test's one argument */
                if (is_name(u, "is")) return fail_at(p, u, "%s", "you cannot chain tests with 'is'");
                jnode *arg = parse_primary(p);
                if (arg) arg = parse_postfix(p, arg);
                if (!arg) return NULL;
                f->args = jarena_alloc(p->a, sizeof *f->args);
                if (!f->args) return fail_at(p, u, "%s", "out of memory");
                f->args[0] = arg;
                f->nargs = 1;
            }
            n = f;
        } else if (is_op(t, "(")) {
            p->i++;
            jnode *c = node(p, N_CALL, t);
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
        if (!is_op(cur(p), ":") && !is_op(cur(p), "]")) {
            parts[k] = parse_expr(p);
            if (!parts[k]) return NULL;
        }
        if (is_op(cur(p), ":") && k < 2) {
            slice = true;
            k++;
            p->i++;
            continue;
        }
        break;
    }
    if (!expect_op(p, "]")) return NULL;
    jnode *n = node(p, slice ? N_SLICE : N_ITEM, at);
    if (!n) return NULL;
    n->a = obj;
    if (!slice && !parts[0]) return fail_at(p, at, "%s", "empty subscript");
    n->b = parts[0];
    n->c = parts[1];
    n->d = parts[2];
    return n;
}

static jnode *parse_postfix(parser *p, jnode *n)
{
    for (;;) {
        const jtok *t = cur(p);
        if (is_op(t, ".")) {
            p->i++;
            const jtok *u = cur(p);
            if (u->kind == T_NAME) {
                jnode *a = node(p, N_ATTR, t);
                if (!a) return NULL;
                a->a = n;
                a->name = name_copy(p, u);
                a->name_n = u->n;
                p->i++;
                n = a;
            } else if (u->kind == T_INT) {
                jnode *a = node(p, N_ITEM, t), *k = node(p, N_CONST, u);
                if (!a || !k) return NULL;
                k->val = jv_int(u->i);
                a->a = n;
                a->b = k;
                p->i++;
                n = a;
            } else {
                return unexpected(p);
            }
        } else if (is_op(t, "[")) {
            p->i++;
            if (!(n = parse_subscript(p, n, t))) return NULL;
        } else if (is_op(t, "(")) {
            p->i++;
            jnode *c = node(p, N_CALL, t);
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
    while (!is_op(cur(p), close)) {
        if (keys.n && !expect_op(p, ",")) return false;
        if (is_op(cur(p), close)) break;
        jnode *k = parse_expr(p);
        if (!k || !nl_push(p, &keys, k)) return false;
        if (dict) {
            if (!expect_op(p, ":")) return false;
            jnode *v = parse_expr(p);
            if (!v || !nl_push(p, &vals, v)) return false;
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
    const jtok *t = cur(p);
    jnode *n;
    if (t->kind == T_NAME) {
        n = node(p, N_CONST, t);
        if (!n) return NULL;
        if (is_name(t, "true") || is_name(t, "True")) n->val = jv_bool(true);
        else if (is_name(t, "false") || is_name(t, "False")) n->val = jv_bool(false);
        else if (is_name(t, "none") || is_name(t, "None")) n->val = jv_none();
        else {
            n->kind = N_NAME;
            n->name = name_copy(p, t);
            n->name_n = t->n;
        }
        p->i++;
        return n;
    }
    if (t->kind == T_STRING) {
        jbuf b = {0};
        while (cur(p)->kind == T_STRING) {          /* adjacent strings join */
            jbuf_add(&b, cur(p)->s, cur(p)->n);
            p->i++;
        }
        n = node(p, N_CONST, t);
        if (n) n->val = jv_str(p->a, b.s ? b.s : "", b.n);
        free(b.s);
        if (n && n->val.kind != JV_STR) return fail_at(p, t, "%s", "out of memory");
        return n;
    }
    if (t->kind == T_INT || t->kind == T_FLOAT) {
        n = node(p, N_CONST, t);
        if (n) n->val = t->kind == T_INT ? jv_int(t->i) : jv_float(t->f);
        p->i++;
        return n;
    }
    if (is_op(t, "(")) {
        p->i++;
        if (is_op(cur(p), ")")) {
            p->i++;
            n = node(p, N_TUPLE, t);
            return n;
        }
        jnode *first = parse_expr(p);
        if (!first) return NULL;
        if (!is_op(cur(p), ",")) return expect_op(p, ")") ? first : NULL;
        n = node(p, N_TUPLE, t);
        if (!n) return NULL;
        nlist items = {0};
        if (!nl_push(p, &items, first)) return NULL;
        while (is_op(cur(p), ",")) {
            p->i++;
            if (is_op(cur(p), ")")) break;
            jnode *x = parse_expr(p);
            if (!x || !nl_push(p, &items, x)) return NULL;
        }
        if (!expect_op(p, ")")) return NULL;
        n->args = items.v;
        n->nargs = items.n;
        return n;
    }
    if (is_op(t, "[") || is_op(t, "{")) {
        bool dict = is_op(t, "{");
        p->i++;
        n = node(p, dict ? N_DICT : N_LIST, t);
        if (!n || !parse_items(p, n, dict ? "}" : "]", dict)) return NULL;
        return n;
    }
    return unexpected(p);
}

static jnode *parse_unary(parser *p, bool with_filter)
{
    const jtok *t = cur(p);
    jnode *n;
    if (++p->depth > MAX_NESTING) return fail_at(p, t, "%s", "expression nested too deeply");
    if (is_op(t, "-") || is_op(t, "+")) {
        p->i++;
        jnode *x = parse_unary(p, false);
        if (!x) return NULL;
        n = node(p, is_op(t, "-") ? N_NEG : N_POS, t);
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
    jnode *n = node(p, kind, at);
    if (!n) return NULL;
    n->op = op;
    n->a = l;
    n->b = r;
    return n;
}

static jnode *parse_pow(parser *p)
{
    jnode *l = parse_unary(p, true);
    while (l && is_op(cur(p), "**")) {
        const jtok *t = cur(p);
        p->i++;
        l = binary(p, t, N_BIN, OP_POW, l, parse_unary(p, true));
    }
    return l;
}

static jnode *parse_math2(parser *p)
{
    jnode *l = parse_pow(p);
    for (;;) {
        const jtok *t = cur(p);
        int op = is_op(t, "*") ? OP_MUL : is_op(t, "/") ? OP_DIV : is_op(t, "//") ? OP_FLOORDIV
                 : is_op(t, "%") ? OP_MOD : 0;
        if (!l || !op) return l;
        p->i++;
        l = binary(p, t, N_BIN, op, l, parse_pow(p));
    }
}

static jnode *parse_concat(parser *p)
{
    jnode *l = parse_math2(p);
    while (l && is_op(cur(p), "~")) {
        const jtok *t = cur(p);
        p->i++;
        l = binary(p, t, N_BIN, OP_CONCAT, l, parse_math2(p));
    }
    return l;
}

static jnode *parse_math1(parser *p)
{
    jnode *l = parse_concat(p);
    for (;;) {
        const jtok *t = cur(p);
        int op = is_op(t, "+") ? OP_ADD : is_op(t, "-") ? OP_SUB : 0;
        if (!l || !op) return l;
        p->i++;
        l = binary(p, t, N_BIN, op, l, parse_concat(p));
    }
}

static jnode *parse_compare(parser *p)
{
    const jtok *start = cur(p);
    jnode *first = parse_math1(p);
    if (!first) return NULL;
    nlist operands = {0};
    int ops[64], nops = 0;
    for (;;) {
        const jtok *t = cur(p);
        int op = is_op(t, "==") ? OP_EQ : is_op(t, "!=") ? OP_NE : is_op(t, "<") ? OP_LT : is_op(t, "<=") ? OP_LE
                 : is_op(t, ">") ? OP_GT : is_op(t, ">=") ? OP_GE : is_name(t, "in") ? OP_IN
                 : (is_name(t, "not") && is_name(peek(p, 1), "in")) ? OP_NOTIN : 0;
        if (!op) break;
        if (nops == 64) return fail_at(p, t, "%s", "too many chained comparisons");
        p->i += op == OP_NOTIN ? 2 : 1;
        jnode *r = parse_math1(p);
        if (!r || !nl_push(p, &operands, r)) return NULL;
        ops[nops++] = op;
    }
    if (!nops) return first;
    jnode *n = node(p, N_COMPARE, start);
    if (!n) return NULL;
    n->a = first;
    n->args = operands.v;
    n->nargs = operands.n;
    n->ops = jarena_alloc(p->a, (size_t)nops * sizeof *n->ops);
    if (!n->ops) return fail_at(p, start, "%s", "out of memory");
    memcpy(n->ops, ops, (size_t)nops * sizeof *ops);
    return n;
}

static jnode *parse_not(parser *p)
{
    const jtok *t = cur(p);
    if (is_name(t, "not")) {
        p->i++;
        if (++p->depth > MAX_NESTING) return fail_at(p, t, "%s", "expression nested too deeply");
        jnode *x = parse_not(p);
        p->depth--;
        if (!x) return NULL;
        jnode *n = node(p, N_NOT, t);
        if (n) n->a = x;
        return n;
    }
    return parse_compare(p);
}

static jnode *parse_and(parser *p)
{
    jnode *l = parse_not(p);
    while (l && is_name(cur(p), "and")) {
        const jtok *t = cur(p);
        p->i++;
        l = binary(p, t, N_AND, 0, l, parse_not(p));
    }
    return l;
}

static jnode *parse_or(parser *p)
{
    jnode *l = parse_and(p);
    while (l && is_name(cur(p), "or")) {
        const jtok *t = cur(p);
        p->i++;
        l = binary(p, t, N_OR, 0, l, parse_and(p));
    }
    return l;
}

static jnode *parse_expr(parser *p)
{
    if (++p->depth > MAX_NESTING) return fail_at(p, cur(p), "%s", "expression nested too deeply");
    jnode *n = parse_or(p);
    while (n && is_name(cur(p), "if")) {
        const jtok *t = cur(p);
        p->i++;
        jnode *c = node(p, N_COND, t);
        if (!c || !(c->a = parse_or(p))) return NULL;
        c->b = n;
        if (is_name(cur(p), "else")) {
            p->i++;
            if (!(c->c = parse_expr(p))) return NULL;
        }
        n = c;
    }
    p->depth--;
    return n;
}

/* ---- statements ---- */

static jnode *parse_body(parser *p, const char *const *ends, int *which);

static bool end_tag(parser *p)
{
    if (cur(p)->kind == T_BLOCK_END) {
        p->i++;
        return true;
    }
    unexpected(p);
    return false;
}

static jnode *parse_if(parser *p, const jtok *at)
{
    static const char *const ends[] = {"elif", "else", "endif", NULL};
    jnode *n = node(p, N_IF, at);
    if (!n || !(n->a = parse_expr(p)) || !end_tag(p)) return NULL;
    int which;
    if (!(n->b = parse_body(p, ends, &which))) return NULL;
    if (which == 0) {                        /* elif: a nested if in the else branch */
        const jtok *t = peek(p, -1);
        if (!(n->c = parse_if(p, t))) return NULL;
        return n;
    }
    if (!end_tag(p)) return NULL;
    if (which == 1) {
        static const char *const endif[] = {"endif", NULL};
        if (!(n->c = parse_body(p, endif, &which)) || !end_tag(p)) return NULL;
    }
    return n;
}

static jnode *parse_for(parser *p, const jtok *at)
{
    jnode *n = node(p, N_FOR, at);
    if (!n) return NULL;
    const char *names[8];
    int nn = 0;
    bool paren = is_op(cur(p), "(");
    if (paren) p->i++;
    for (;;) {
        if (cur(p)->kind != T_NAME || nn == 8) return unexpected(p);
        names[nn++] = name_copy(p, cur(p));
        p->i++;
        if (!is_op(cur(p), ",")) break;
        p->i++;
    }
    if (paren && !expect_op(p, ")")) return NULL;
    if (!is_name(cur(p), "in")) return unexpected(p);
    p->i++;
    n->targets = jarena_alloc(p->a, (size_t)nn * sizeof *n->targets);
    if (!n->targets) return fail_at(p, at, "%s", "out of memory");
    memcpy(n->targets, names, (size_t)nn * sizeof *names);
    n->ntargets = nn;
    if (!(n->a = parse_or(p))) return NULL;        /* "if" after the iterable filters it */
    if (is_name(cur(p), "if")) {
        p->i++;
        if (!(n->b = parse_expr(p))) return NULL;
    }
    if (is_name(cur(p), "recursive")) return fail_at(p, cur(p), "%s", "recursive for loops are not supported");
    if (!end_tag(p)) return NULL;
    static const char *const ends[] = {"else", "endfor", NULL};
    int which;
    if (!(n->c = parse_body(p, ends, &which)) || !end_tag(p)) return NULL;
    if (which == 0) {
        static const char *const endfor[] = {"endfor", NULL};
        if (!(n->d = parse_body(p, endfor, &which)) || !end_tag(p)) return NULL;
    }
    return n;
}

static jnode *parse_set(parser *p, const jtok *at)
{
    if (cur(p)->kind != T_NAME) return unexpected(p);
    const jtok *name = cur(p);
    p->i++;
    jnode *n = node(p, N_SET, at);
    if (!n) return NULL;
    n->name = name_copy(p, name);
    n->name_n = name->n;
    if (is_op(cur(p), ".")) {
        p->i++;
        if (cur(p)->kind != T_NAME) return unexpected(p);
        n->kind = N_SET_ATTR;
        n->attr = name_copy(p, cur(p));
        p->i++;
    }
    if (is_op(cur(p), ",")) return fail_at(p, cur(p), "%s", "'set' with several targets is not supported");
    if (cur(p)->kind == T_BLOCK_END && n->kind == N_SET) {  /* {% set x %}...{% endset %} */
        p->i++;
        static const char *const ends[] = {"endset", NULL};
        int which;
        n->kind = N_SET_BLOCK;
        if (!(n->a = parse_body(p, ends, &which)) || !end_tag(p)) return NULL;
        return n;
    }
    if (is_op(cur(p), "|")) return fail_at(p, cur(p), "%s", "filters on a block 'set' are not supported");
    if (!expect_op(p, "=")) return NULL;
    if (!(n->a = parse_expr(p))) return NULL;
    if (is_op(cur(p), ",")) {                          /* set x = a, b: a tuple */
        jnode *t = node(p, N_TUPLE, cur(p));
        nlist items = {0};
        if (!t || !nl_push(p, &items, n->a)) return NULL;
        while (is_op(cur(p), ",")) {
            p->i++;
            jnode *x = parse_expr(p);
            if (!x || !nl_push(p, &items, x)) return NULL;
        }
        t->args = items.v;
        t->nargs = items.n;
        n->a = t;
    }
    return end_tag(p) ? n : NULL;
}

static jnode *parse_macro(parser *p, const jtok *at)
{
    if (cur(p)->kind != T_NAME) return unexpected(p);
    jnode *n = node(p, N_MACRO, at);
    if (!n) return NULL;
    n->name = name_copy(p, cur(p));
    n->name_n = cur(p)->n;
    p->i++;
    if (!expect_op(p, "(")) return NULL;
    const char *names[32];
    nlist defaults = {0};
    int nn = 0;
    while (!is_op(cur(p), ")")) {
        if (nn && !expect_op(p, ",")) return NULL;
        if (cur(p)->kind != T_NAME || nn == 32) return unexpected(p);
        names[nn++] = name_copy(p, cur(p));
        p->i++;
        jnode *def = NULL;
        if (is_op(cur(p), "=")) {
            p->i++;
            if (!(def = parse_expr(p))) return NULL;
        } else if (defaults.n && defaults.v[defaults.n - 1]) {
            return fail_at(p, cur(p), "%s", "a macro parameter without a default follows one with a default");
        }
        if (!nl_push(p, &defaults, def)) return NULL;
    }
    p->i++;
    if (!end_tag(p)) return NULL;
    n->targets = jarena_alloc(p->a, (size_t)(nn ? nn : 1) * sizeof *n->targets);
    if (!n->targets) return fail_at(p, at, "%s", "out of memory");
    memcpy(n->targets, names, (size_t)nn * sizeof *names);
    n->ntargets = nn;
    n->kw = defaults.v;
    n->nkw = defaults.n;
    static const char *const ends[] = {"endmacro", NULL};
    int which;
    if (!(n->a = parse_body(p, ends, &which)) || !end_tag(p)) return NULL;
    return n;
}

/* The statement after "{%" (the tag name is current). */
static jnode *parse_statement(parser *p)
{
    const jtok *t = cur(p);
    if (t->kind != T_NAME) return unexpected(p);
    p->i++;
    if (is_name(t, "if")) return parse_if(p, t);
    if (is_name(t, "for")) return parse_for(p, t);
    if (is_name(t, "set")) return parse_set(p, t);
    if (is_name(t, "macro")) return parse_macro(p, t);
    if (is_name(t, "break") || is_name(t, "continue")) {
        jnode *n = node(p, is_name(t, "break") ? N_BREAK : N_CONTINUE, t);
        return n && end_tag(p) ? n : NULL;
    }
    if (is_name(t, "generation")) {               /* transformers' assistant-mask marker: renders its body */
        static const char *const ends[] = {"endgeneration", NULL};
        int which;
        if (!end_tag(p)) return NULL;
        jnode *body = parse_body(p, ends, &which);
        return body && end_tag(p) ? body : NULL;
    }
    jerr_set(p->e, t->line, t->col, "'{%% %.*s %%}' is not supported", (int)t->n, t->s);
    return NULL;
}

/* Statements up to one of `ends` ("{% end... %}", left current after its
 * name) or, with ends NULL, the end of the template. */
static jnode *parse_body(parser *p, const char *const *ends, int *which)
{
    const jtok *start = cur(p);
    if (++p->depth > MAX_NESTING) return fail_at(p, start, "%s", "statements nested too deeply");
    nlist body = {0};
    for (;;) {
        const jtok *t = cur(p);
        jnode *n = NULL;
        if (t->kind == T_EOF) {
            if (!ends) break;
            int last = 0;
            while (ends[last + 1]) last++;
            jerr_set(p->e, t->line, t->col, "missing '{%% %s %%}'", ends[last]);
            return NULL;
        }
        if (t->kind == T_DATA) {
            n = node(p, N_TEXT, t);
            if (!n) return NULL;
            n->name = t->s;
            n->name_n = t->n;
            p->i++;
        } else if (t->kind == T_VAR_BEGIN) {
            p->i++;
            n = node(p, N_OUTPUT, t);
            if (!n || !(n->a = parse_expr(p))) return NULL;
            if (cur(p)->kind != T_VAR_END) return unexpected(p);
            p->i++;
        } else if (t->kind == T_BLOCK_BEGIN) {
            const jtok *name = peek(p, 1);
            for (int k = 0; ends && ends[k]; k++)
                if (is_name(name, ends[k])) {
                    p->i += 2;
                    *which = k;
                    goto done;
                }
            if (name->kind == T_NAME && ((name->n > 3 && !memcmp(name->s, "end", 3)) || is_name(name, "elif") ||
                                         is_name(name, "else")))
                return fail_at(p, name, "unexpected '%s'", name_copy(p, name));
            p->i++;
            if (!(n = parse_statement(p))) return NULL;
        } else {
            return unexpected(p);
        }
        if (!nl_push(p, &body, n)) return NULL;
    }
done:;
    jnode *b = node(p, N_BLOCK, start);
    if (!b) return NULL;
    b->args = body.v;
    b->nargs = body.n;
    p->depth--;
    return b;
}

int jinja_parse_tokens(const jtok *t, int n, jarena *a, jerr *e, jnode **root)
{
    parser p = {t, n, 0, a, e, 0};
    int which;
    *root = parse_body(&p, NULL, &which);
    return *root ? 0 : -1;
}
