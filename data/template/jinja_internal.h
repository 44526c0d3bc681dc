/* data/template/jinja_internal.h - what the lexer, parser, values and
 * evaluator of the Jinja interpreter share (see jinja.h for the language).
 *
 * Everything a parse or a render allocates lives in an arena (jarena) that
 * is freed at once: the AST with the template, values with the render.
 * Values are immutable once built (transformers renders in an immutable
 * sandbox), except a namespace()'s attributes, so they are shared freely.
 */
#ifndef DS_DATA_TEMPLATE_JINJA_INTERNAL_H
#define DS_DATA_TEMPLATE_JINJA_INTERNAL_H

#include "jinja.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- arena ---- */
typedef struct jarena_block jarena_block;
typedef struct {
    jarena_block *head;
    size_t used, limit;    /* bytes handed out; limit 0 = none */
    bool oom;              /* an allocation failed for lack of memory (not for the limit): message set */
} jarena;

void *jarena_alloc(jarena *a, size_t bytes);   /* zeroed, 8-aligned; NULL past the limit or out of memory */
void jarena_free(jarena *a);

/* ---- values ---- */
typedef enum {
    JV_UNDEF, JV_NONE, JV_BOOL, JV_INT, JV_FLOAT, JV_STR, JV_LIST, JV_DICT,
    JV_NS,        /* namespace(): a dict whose entries `set ns.x = ...` may change */
    JV_LOOP,      /* the `loop` variable of a for loop */
    JV_FUNC,      /* a global function (namespace, range, raise_exception, ...) */
    JV_METHOD,    /* a bound method: obj.name (e.g. "abc".strip) */
    JV_MACRO,
} jv_kind;

typedef struct jstr { size_t n; char s[]; } jstr;   /* UTF-8, NUL-terminated */
typedef struct jv jv;
typedef struct jlist jlist;
typedef struct jdict jdict;
typedef struct jloop jloop;
typedef struct jnode jnode;
typedef struct jmethod jmethod;

struct jv {
    uint8_t kind;
    union {
        bool b;
        int64_t i;
        double f;
        const jstr *s;
        const jlist *l;
        jdict *d;                 /* JV_DICT (never changed) and JV_NS */
        const jloop *loop;
        int func;                 /* JV_FUNC: index into the globals table */
        const jmethod *m;
        const jnode *macro;
        const char *undef;        /* JV_UNDEF: what was missing, for messages (may be NULL) */
    } u;
};

struct jlist { size_t n; jv *v; bool tuple; };   /* a tuple prints as (a, b) and is never equal to a list */
struct jdict { size_t n, cap; jv *key, *val; };
struct jmethod { jv self; const char *name; };
struct jloop {
    int64_t index0, length;
    jv prev, next;                /* JV_UNDEF at the ends */
};

/* ---- tokens and AST ---- */
typedef enum {
    T_EOF, T_DATA, T_VAR_BEGIN, T_VAR_END, T_BLOCK_BEGIN, T_BLOCK_END,
    T_NAME, T_STRING, T_INT, T_FLOAT, T_OP,
} jtok_kind;

typedef struct {
    uint8_t kind;
    int line, col;
    const char *s; size_t n;      /* name, operator, data or decoded string (arena) */
    int64_t i; double f;
} jtok;

typedef enum {
    /* statements */
    N_TEXT, N_OUTPUT, N_IF, N_FOR, N_SET, N_SET_ATTR, N_SET_BLOCK, N_MACRO, N_BREAK, N_CONTINUE, N_BLOCK,
    /* expressions */
    N_CONST, N_NAME, N_ATTR, N_ITEM, N_SLICE, N_CALL, N_FILTER, N_TEST, N_NEG, N_POS, N_NOT, N_AND, N_OR,
    N_BIN, N_COMPARE, N_COND, N_LIST, N_TUPLE, N_DICT,
} jnode_kind;

/* One node type for everything; which fields a kind uses is written at
 * each kind's parser and evaluator. */
struct jnode {
    uint8_t kind;
    int line, col;
    const char *name; size_t name_n;  /* N_NAME, N_ATTR, N_FILTER, N_TEST, N_SET*, N_MACRO; N_TEXT text */
    const char *attr;                 /* N_SET_ATTR: the attribute */
    jv val;                           /* N_CONST */
    int op;                           /* N_BIN operator; N_TEST negated; N_COMPARE -; N_FOR recursive */
    jnode *a, *b, *c, *d;             /* operands; N_FOR: a iterable, b filter; N_SLICE a[b:c:d] */
    jnode **args; int nargs;          /* call/filter/test arguments; bodies of statements */
    jnode **kw; const char **kwname; int nkw;   /* keyword arguments; N_FOR else body in kw */
    const char **targets; int ntargets;         /* N_FOR loop variables; N_MACRO parameters */
    int *ops;                         /* N_COMPARE: one operator per operand in args */
};

/* Binary and comparison operators. */
enum { OP_ADD = 1, OP_SUB, OP_MUL, OP_DIV, OP_FLOORDIV, OP_MOD, OP_POW, OP_CONCAT,
       OP_EQ, OP_NE, OP_LT, OP_LE, OP_GT, OP_GE, OP_IN, OP_NOTIN };

/* ---- errors: a message naming name:line:col ---- */
typedef struct {
    const char *name;     /* the template's name (file) */
    int rc;
    char msg[600];
} jerr;

int jerr_set(jerr *e, int line, int col, const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* ---- lexer and parser ---- */
/* Tokens of the whole source, with transformers' whitespace handling
 * (trim_blocks, lstrip_blocks, '-' and '+' markers); comments are dropped
 * and {% raw %} blocks become data. */
int jinja_lex(const char *src, size_t n, jarena *a, jerr *e, jtok **toks, int *ntoks);
/* The statements of the template (a N_BLOCK node). */
int jinja_parse_tokens(const jtok *t, int n, jarena *a, jerr *e, jnode **root);

/* ---- values (jinja_value.c) ---- */
jstr *jv_newstr(jarena *a, const char *s, size_t n);
jv jv_str(jarena *a, const char *s, size_t n);          /* JV_UNDEF with u.undef NULL when out of memory */
static inline jv jv_int(int64_t i) { jv v = {.kind = JV_INT}; v.u.i = i; return v; }
static inline jv jv_float(double f) { jv v = {.kind = JV_FLOAT}; v.u.f = f; return v; }
static inline jv jv_bool(bool b) { jv v = {.kind = JV_BOOL}; v.u.b = b; return v; }
static inline jv jv_none(void) { jv v = {.kind = JV_NONE}; return v; }
static inline jv jv_undef(const char *what) { jv v = {.kind = JV_UNDEF}; v.u.undef = what; return v; }
jlist *jv_newlist(jarena *a, size_t n);
jdict *jv_newdict(jarena *a, size_t cap);
int jv_dict_set(jarena *a, jdict *d, jv key, jv val);  /* DS_OK, or -1 out of memory */
const jv *jv_dict_get(const jdict *d, const char *key, size_t n);   /* NULL when absent */
const jv *jv_dict_find(const jdict *d, jv key);

bool jv_truthy(jv v);
bool jv_equal(jv a, jv b);
const char *jv_type_name(jv v);
/* Python's str(v) appended to buf (repr for the items of lists and dicts);
 * returns false when out of memory (oom, message set) or past max (over). */
typedef struct { char *s; size_t n, cap, max; bool over, oom; } jbuf;
bool jbuf_add(jbuf *b, const char *s, size_t n);
bool jv_to_str(jbuf *b, jv v);
bool jv_repr(jbuf *b, jv v);
/* Python's json.dumps(v, ensure_ascii=False, indent=indent (<0: none), sort_keys=False). */
bool jv_to_json(jbuf *b, jv v, int indent, int level, bool *bad_type);
/* Python's repr(float). */
void jv_float_repr(double f, char out[40]);
/* A JSON value (jansson) as a template value. */
struct json_t;
int jv_from_json(jarena *a, const struct json_t *j, int depth, jv *out);

/* Code points of a UTF-8 string (valid: it came from JSON or the template). */
size_t ju_len(const char *s, size_t n);
size_t ju_offset(const char *s, size_t n, size_t cp);  /* byte offset of code point cp (clamped to n) */
bool ju_space(uint32_t cp);                                /* Python's str.isspace() */

/* ---- the render (jinja_eval.c) and the built-ins (jinja_builtins.c) ---- */
typedef struct jscope jscope;
typedef struct jrun jrun;
struct jrun {
    jarena *a;
    jerr *e;
    jbuf out;
    jscope *root;
    long steps, max_steps;
    int depth, max_depth;
    int64_t now;              /* strftime_now's time; 0 = the clock */
};

/* Fail at a node: sets the message, returns -1. */
int jfail(jrun *r, const jnode *at, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int jfail_oom(jrun *r, const jnode *at);
/* A value's text as str() gives it (arena copy). */
int jv_as_text(jrun *r, const jnode *at, jv v, const jstr **out);

int jb_filter(jrun *r, const jnode *at, const char *name, jv in, const jv *args, int nargs, const char **kwn,
              const jv *kwv, int nkw, jv *out);
/* A test; *known false when there is no test of that name. */
int jb_test(jrun *r, const jnode *at, const char *name, jv in, const jv *args, int nargs, bool *result);
int jb_call(jrun *r, const jnode *at, jv f, const jv *args, int nargs, const char **kwn, const jv *kwv, int nkw,
            jv *out);
/* A global function by name (JV_FUNC), or false. */
bool jb_global(const char *name, size_t n, jv *out);
/* obj.name for built-in objects (strings, dicts, loop, ...): a method or attribute. */
int jb_getattr(jrun *r, const jnode *at, jv obj, const char *name, size_t n, jv *out);
/* obj[key] with Python's semantics (negative indices; dicts by key). */
int jb_getitem(jrun *r, const jnode *at, jv obj, jv key, jv *out);
int jb_slice(jrun *r, const jnode *at, jv obj, jv start, jv stop, jv step, jv *out);
/* The items of an iterable (a dict gives its keys, a string its characters). */
int jb_iter(jrun *r, const jnode *at, jv v, jlist **out);
int jb_binop(jrun *r, const jnode *at, int op, jv a, jv b, jv *out);
int jb_compare(jrun *r, const jnode *at, int op, jv a, jv b, bool *out);

/* ---- helpers the built-ins share (jinja_strings.c) ---- */
int jb_text_of(jrun *r, const jnode *at, jv v, const jstr **out);              /* str(v); undefined gives "" */
int jb_make_str(jrun *r, const jnode *at, const char *s, size_t n, jv *out);
int jb_list_out(jrun *r, const jnode *at, jlist *l, jv *out);
int jb_want_str(jrun *r, const jnode *at, const char *what, jv v, const jstr **out);
int jb_want_int(jrun *r, const jnode *at, const char *what, jv v, int64_t *out);
/* The span [*a, *b) of s.strip(chars) (chars NULL: whitespace), stripping the left and/or right end. */
void jb_strip_span(const jstr *s, const jstr *chars, bool left, bool right, size_t *a, size_t *b);
/* mode 0 lower, 1 upper, 2 capitalize, 3 title */
int jb_case_map(jrun *r, const jnode *at, const jstr *s, int mode, jv *out);
int jb_str_replace(jrun *r, const jnode *at, const jstr *s, const jstr *old, const jstr *new, int64_t count, jv *out);
/* sep.join(str(item) or str(item.attr) for item in items) */
int jb_join_items(jrun *r, const jnode *at, jlist *items, const jstr *sep, const char *attr, jv *out);
int jb_call_method(jrun *r, const jnode *at, const jmethod *m, const jv *a, int na, jv *out);

#endif
