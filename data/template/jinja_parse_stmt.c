/* data/template/jinja_parse_stmt.c - the statements of a template: if/elif/
 * else, for (targets, "if" filter, else), set (name, namespace attribute,
 * block), macro, break, continue, generation. Other tags are refused by name.
 */
#include "jinja_parse.h"

#include "core/status.h"

#include <string.h>

static jnode *parse_body(parser *p, const char *const *ends, int *which);

static bool end_tag(parser *p)
{
    if (jp_cur(p)->kind == T_BLOCK_END) {
        p->i++;
        return true;
    }
    jp_unexpected(p);
    return false;
}

static jnode *parse_if(parser *p, const jtok *at)
{
    static const char *const ends[] = {"elif", "else", "endif", NULL};
    jnode *n = jp_node(p, N_IF, at);
    if (!n || !(n->a = jp_parse_expr(p)) || !end_tag(p)) return NULL;
    int which;
    if (!(n->b = parse_body(p, ends, &which))) return NULL;
    if (which == 0) {                        /* elif: a nested if in the else branch */
        const jtok *t = jp_peek(p, -1);
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
    jnode *n = jp_node(p, N_FOR, at);
    if (!n) return NULL;
    const char *names[8];
    int nn = 0;
    bool paren = jp_is_op(jp_cur(p), "(");
    if (paren) p->i++;
    for (;;) {
        if (jp_cur(p)->kind != T_NAME || nn == 8) return jp_unexpected(p);
        names[nn++] = jp_name_copy(p, jp_cur(p));
        p->i++;
        if (!jp_is_op(jp_cur(p), ",")) break;
        p->i++;
    }
    if (paren && !jp_expect_op(p, ")")) return NULL;
    if (!jp_is_name(jp_cur(p), "in")) return jp_unexpected(p);
    p->i++;
    n->targets = jarena_alloc(p->a, (size_t)nn * sizeof *n->targets);
    if (!n->targets) return jp_fail_at(p, at, "%s", "out of memory");
    memcpy(n->targets, names, (size_t)nn * sizeof *names);
    n->ntargets = nn;
    if (!(n->a = jp_parse_or(p))) return NULL;        /* "if" after the iterable filters it */
    if (jp_is_name(jp_cur(p), "if")) {
        p->i++;
        if (!(n->b = jp_parse_expr(p))) return NULL;
    }
    if (jp_is_name(jp_cur(p), "recursive")) return jp_fail_at(p, jp_cur(p), "%s", "recursive for loops are not supported");
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
    if (jp_cur(p)->kind != T_NAME) return jp_unexpected(p);
    const jtok *name = jp_cur(p);
    p->i++;
    jnode *n = jp_node(p, N_SET, at);
    if (!n) return NULL;
    n->name = jp_name_copy(p, name);
    n->name_n = name->n;
    if (jp_is_op(jp_cur(p), ".")) {
        p->i++;
        if (jp_cur(p)->kind != T_NAME) return jp_unexpected(p);
        n->kind = N_SET_ATTR;
        n->attr = jp_name_copy(p, jp_cur(p));
        p->i++;
    }
    if (jp_is_op(jp_cur(p), ",")) return jp_fail_at(p, jp_cur(p), "%s", "'set' with several targets is not supported");
    if (jp_cur(p)->kind == T_BLOCK_END && n->kind == N_SET) {  /* {% set x %}...{% endset %} */
        p->i++;
        static const char *const ends[] = {"endset", NULL};
        int which;
        n->kind = N_SET_BLOCK;
        if (!(n->a = parse_body(p, ends, &which)) || !end_tag(p)) return NULL;
        return n;
    }
    if (jp_is_op(jp_cur(p), "|")) return jp_fail_at(p, jp_cur(p), "%s", "filters on a block 'set' are not supported");
    if (!jp_expect_op(p, "=")) return NULL;
    if (!(n->a = jp_parse_expr(p))) return NULL;
    if (jp_is_op(jp_cur(p), ",")) {                          /* set x = a, b: a tuple */
        jnode *t = jp_node(p, N_TUPLE, jp_cur(p));
        nlist items = {0};
        if (!t || !jp_nl_push(p, &items, n->a)) return NULL;
        while (jp_is_op(jp_cur(p), ",")) {
            p->i++;
            jnode *x = jp_parse_expr(p);
            if (!x || !jp_nl_push(p, &items, x)) return NULL;
        }
        t->args = items.v;
        t->nargs = items.n;
        n->a = t;
    }
    return end_tag(p) ? n : NULL;
}

static jnode *parse_macro(parser *p, const jtok *at)
{
    if (jp_cur(p)->kind != T_NAME) return jp_unexpected(p);
    jnode *n = jp_node(p, N_MACRO, at);
    if (!n) return NULL;
    n->name = jp_name_copy(p, jp_cur(p));
    n->name_n = jp_cur(p)->n;
    p->i++;
    if (!jp_expect_op(p, "(")) return NULL;
    const char *names[32];
    nlist defaults = {0};
    int nn = 0;
    while (!jp_is_op(jp_cur(p), ")")) {
        if (nn && !jp_expect_op(p, ",")) return NULL;
        if (jp_cur(p)->kind != T_NAME || nn == 32) return jp_unexpected(p);
        names[nn++] = jp_name_copy(p, jp_cur(p));
        p->i++;
        jnode *def = NULL;
        if (jp_is_op(jp_cur(p), "=")) {
            p->i++;
            if (!(def = jp_parse_expr(p))) return NULL;
        } else if (defaults.n && defaults.v[defaults.n - 1]) {
            return jp_fail_at(p, jp_cur(p), "%s", "a macro parameter without a default follows one with a default");
        }
        if (!jp_nl_push(p, &defaults, def)) return NULL;
    }
    p->i++;
    if (!end_tag(p)) return NULL;
    n->targets = jarena_alloc(p->a, (size_t)(nn ? nn : 1) * sizeof *n->targets);
    if (!n->targets) return jp_fail_at(p, at, "%s", "out of memory");
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
    const jtok *t = jp_cur(p);
    if (t->kind != T_NAME) return jp_unexpected(p);
    p->i++;
    if (jp_is_name(t, "if")) return parse_if(p, t);
    if (jp_is_name(t, "for")) return parse_for(p, t);
    if (jp_is_name(t, "set")) return parse_set(p, t);
    if (jp_is_name(t, "macro")) return parse_macro(p, t);
    if (jp_is_name(t, "break") || jp_is_name(t, "continue")) {
        jnode *n = jp_node(p, jp_is_name(t, "break") ? N_BREAK : N_CONTINUE, t);
        return n && end_tag(p) ? n : NULL;
    }
    if (jp_is_name(t, "generation")) {               /* transformers' assistant-mask marker: renders its body */
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
    const jtok *start = jp_cur(p);
    if (++p->depth > MAX_NESTING) return jp_fail_at(p, start, "%s", "statements nested too deeply");
    nlist body = {0};
    for (;;) {
        const jtok *t = jp_cur(p);
        jnode *n = NULL;
        if (t->kind == T_EOF) {
            if (!ends) break;
            int last = 0;
            while (ends[last + 1]) last++;
            jerr_set(p->e, t->line, t->col, "missing '{%% %s %%}'", ends[last]);
            return NULL;
        }
        if (t->kind == T_DATA) {
            n = jp_node(p, N_TEXT, t);
            if (!n) return NULL;
            n->name = t->s;
            n->name_n = t->n;
            p->i++;
        } else if (t->kind == T_VAR_BEGIN) {
            p->i++;
            n = jp_node(p, N_OUTPUT, t);
            if (!n || !(n->a = jp_parse_expr(p))) return NULL;
            if (jp_cur(p)->kind != T_VAR_END) return jp_unexpected(p);
            p->i++;
        } else if (t->kind == T_BLOCK_BEGIN) {
            const jtok *name = jp_peek(p, 1);
            for (int k = 0; ends && ends[k]; k++)
                if (jp_is_name(name, ends[k])) {
                    p->i += 2;
                    *which = k;
                    goto done;
                }
            if (name->kind == T_NAME && ((name->n > 3 && !memcmp(name->s, "end", 3)) || jp_is_name(name, "elif") ||
                                         jp_is_name(name, "else")))
                return jp_fail_at(p, name, "unexpected '%s'", jp_name_copy(p, name));
            p->i++;
            if (!(n = parse_statement(p))) return NULL;
        } else {
            return jp_unexpected(p);
        }
        if (!jp_nl_push(p, &body, n)) return NULL;
    }
done:;
    jnode *b = jp_node(p, N_BLOCK, start);
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
