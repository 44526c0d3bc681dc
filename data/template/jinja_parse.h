/* data/template/jinja_parse.h - what the expression parser (jinja_parse.c)
 * and the statement parser (jinja_parse_stmt.c) share.
 */
#ifndef DS_DATA_TEMPLATE_JINJA_PARSE_H
#define DS_DATA_TEMPLATE_JINJA_PARSE_H

#include "jinja_internal.h"

typedef struct {
    const jtok *t;
    int n, i;
    jarena *a;
    jerr *e;
    int depth;
} parser;

#define MAX_NESTING 200

/* A growable node list in the arena. */
typedef struct { jnode **v; int n, cap; } nlist;

const jtok *jp_cur(parser *p);
const jtok *jp_peek(parser *p, int k);
bool jp_is_op(const jtok *t, const char *op);
bool jp_is_name(const jtok *t, const char *name);
/* Fail at token t with fmt (one %s: what); NULL. */
jnode *jp_fail_at(parser *p, const jtok *t, const char *fmt, const char *what);
jnode *jp_unexpected(parser *p);
bool jp_expect_op(parser *p, const char *op);
jnode *jp_node(parser *p, int kind, const jtok *at);
const char *jp_name_copy(parser *p, const jtok *t);
bool jp_nl_push(parser *p, nlist *l, jnode *x);
/* An expression (with "x if c else y"), and one without it (a for loop's iterable). */
jnode *jp_parse_expr(parser *p);
jnode *jp_parse_or(parser *p);

#endif
