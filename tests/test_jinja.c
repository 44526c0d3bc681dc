/* tests/test_jinja.c - the Jinja interpreter: every case of
 * tests/data/chat_templates/cases.jsonl (the real templates of DeepSeek,
 * Qwen, Llama and Mistral models rendered by transformers' configuration of
 * jinja2, scripts/make_template_cases.py) byte for byte, then each construct
 * and each refusal on its own.
 */
#include "core/status.h"
#include "data/template/jinja.h"
#include "testutil.h"

#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Render `src` with the variables of the JSON text `vars`; returns the
 * status, *out the text (malloc'd) or NULL. */
static int render(const char *src, const char *vars, char **out)
{
    jinja_template *t;
    *out = NULL;
    int rc = jinja_compile(src, strlen(src), "t.jinja", &t);
    if (rc) return rc;
    json_t *v = vars ? json_loads(vars, 0, NULL) : NULL;
    cr_assert(!vars || v, "bad test variables %s", vars);
    jinja_limits lim = {.now = 86400 * 365};
    rc = jinja_render(t, v, &lim, out, NULL);
    json_decref(v);
    jinja_free(t);
    return rc;
}

static void expect(const char *src, const char *vars, const char *want)
{
    char *got;
    int rc = render(src, vars, &got);
    cr_assert_eq(rc, DS_OK, "%s: %s", src, ds_errmsg());
    cr_expect_str_eq(got, want, "template %s", src);
    free(got);
}

static void refused(const char *src, const char *vars, const char *msg)
{
    char *got;
    int rc = render(src, vars, &got);
    cr_expect_eq(rc, DS_EDATA, "%s rendered '%s' (rc %d)", src, got ? got : "", rc);
    cr_expect(strstr(ds_errmsg(), msg) != NULL, "%s: message '%s' lacks '%s'", src, ds_errmsg(), msg);
    cr_expect(strncmp(ds_errmsg(), "t.jinja:", 8) == 0, "message '%s' does not name the template", ds_errmsg());
    free(got);
}

/* ---- the real templates against transformers ---- */

static char *read_text(const char *path)
{
    FILE *f = fopen(path, "rb");
    cr_assert(f, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    cr_assert_eq(fread(s, 1, (size_t)n, f), (size_t)n);
    s[n] = '\0';
    fclose(f);
    return s;
}

Test(jinja_cases, real_templates_match_transformers)
{
    char *dir = tu_source_path("tests/data/chat_templates");
    char path[4096];
    snprintf(path, sizeof path, "%s/special_tokens.json", dir);
    json_t *special = json_load_file(path, 0, NULL);
    cr_assert(special, "%s", path);
    snprintf(path, sizeof path, "%s/cases.jsonl", dir);
    FILE *f = fopen(path, "r");
    cr_assert(f, "%s", path);
    char *line = NULL;
    size_t cap = 0;
    int cases = 0, errors = 0, lineno = 0;
    bool seen_writer = false;
    while (getline(&line, &cap, f) > 0) {
        lineno++;
        json_t *c = json_loads(line, 0, NULL);
        cr_assert(c, "%s:%d: bad JSON", path, lineno);
        if (json_object_get(c, "written_by")) {
            seen_writer = true;
            json_decref(c);
            continue;
        }
        const char *name = json_string_value(json_object_get(c, "template"));
        char tpath[4096];
        snprintf(tpath, sizeof tpath, "%s/%s.jinja", dir, name);
        char *src = read_text(tpath);
        jinja_template *t;
        cr_assert_eq(jinja_compile(src, strlen(src), tpath, &t), DS_OK, "%s", ds_errmsg());
        json_t *vars = json_deep_copy(json_object_get(special, name));
        cr_assert(vars, "%s: no special tokens", name);
        json_object_set(vars, "messages", json_object_get(c, "messages"));
        json_object_set(vars, "tools", json_object_get(c, "tools"));
        json_object_set_new(vars, "documents", json_null());
        json_object_set(vars, "add_generation_prompt", json_object_get(c, "add_generation_prompt"));
        char *got = NULL;
        int rc = jinja_render(t, vars, NULL, &got, NULL);
        const json_t *want = json_object_get(c, "expected");
        if (want) {
            cr_assert_eq(rc, DS_OK, "%s:%d (%s): %s", path, lineno, name, ds_errmsg());
            cr_expect_str_eq(got, json_string_value(want), "%s:%d: %s %s add_generation_prompt=%d", path, lineno, name,
                             json_string_value(json_object_get(c, "conversation")),
                             json_is_true(json_object_get(c, "add_generation_prompt")));
            if (json_is_null(json_object_get(c, "tools"))) {   /* the model-template path gives the same */
                jinja_chat *chat;
                const json_t *tok = json_object_get(special, name);
                cr_assert_eq(jinja_chat_new(src, strlen(src), name, json_string_value(json_object_get(tok, "bos_token")),
                                            json_string_value(json_object_get(tok, "eos_token")), &chat), DS_OK);
                char *again;
                cr_assert_eq(jinja_chat_render(chat, json_object_get(c, "messages"),
                                               json_is_true(json_object_get(c, "add_generation_prompt")), &again, NULL),
                             DS_OK, "%s", ds_errmsg());
                cr_expect_str_eq(again, got);
                free(again);
                jinja_chat_free(chat);
            }
        } else {
            const char *msg = json_string_value(json_object_get(c, "error"));
            cr_expect_eq(rc, DS_EDATA, "%s:%d: rendered, expected the error '%s'", path, lineno, msg);
            cr_expect(strstr(ds_errmsg(), msg) != NULL, "%s:%d: '%s' lacks '%s'", path, lineno, ds_errmsg(), msg);
            cr_expect(strstr(ds_errmsg(), name) != NULL, "the error names the template file: %s", ds_errmsg());
            errors++;
        }
        cases++;
        free(got);
        free(src);
        json_decref(vars);
        jinja_free(t);
        json_decref(c);
    }
    free(line);
    fclose(f);
    json_decref(special);
    free(dir);
    cr_expect(seen_writer, "cases.jsonl says which tool wrote it");
    cr_expect_geq(cases, 200, "only %d cases", cases);
    cr_expect_geq(errors, 1, "no case checks raise_exception");
}

/* ---- constructs ---- */

Test(jinja, text_and_output)
{
    expect("hello", NULL, "hello");
    expect("{{ 'a' ~ 1 ~ none ~ true }}", NULL, "a1NoneTrue");
    expect("{{ x }}|{{ y.z }}|{{ [1, 'a', none] }}|{{ {'k': 1.5} }}", "{\"x\": 3, \"y\": {}}", "3||[1, 'a', None]|{'k': 1.5}");
    expect("{{ 1e-5 }} {{ 0.1 + 0.2 }} {{ 2.0 }} {{ 1e16 }} {{ 7 / 2 }} {{ 7 // 2 }} {{ -7 // 2 }} {{ -7 % 3 }}", NULL,
           "1e-05 0.30000000000000004 2.0 1e+16 3.5 3 -4 2");
    expect("{{ 'it''s' }} {{ \"a\\tb\\n\" }}{{ '\\u00e9\\x41' }}", NULL, "its a\tb\néA");
    expect("{# a comment #}x", NULL, "x");
    expect("{% raw %}{{ not parsed }}{% endraw %}", NULL, "{{ not parsed }}");
    expect("line\n", NULL, "line");                 /* keep_trailing_newline=False */
}

Test(jinja, whitespace_control)
{
    /* trim_blocks: the newline after a block tag goes; lstrip_blocks: the indentation before it */
    expect("{% if true %}\n    yes\n    {% endif %}\nend", NULL, "    yes\nend");
    expect("a  {%- if true %} b {% endif -%}  \n c", NULL, "a b c");
    expect("a\n  {{- 'b' -}}  \nc", NULL, "abc");
    expect("  {%+ if true %}x{% endif +%}\ny", NULL, "  x\ny");
    expect("{{ 'v' }}\n{# c #}\nw", NULL, "v\nw");
    expect("x {% if true %}y{% endif %}", NULL, "x y");      /* not at the start of a line: kept */
}

Test(jinja, for_loops)
{
    expect("{% for x in [1, 2, 3] %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ loop.first }}"
           "{{ loop.last }}{{ loop.length }};{% endfor %}", NULL,
           "103TrueFalse3;212FalseFalse3;321FalseTrue3;");
    expect("{% for x in [] %}a{% else %}empty{% endfor %}", NULL, "empty");
    expect("{% for k, v in d.items() %}{{ k }}={{ v }},{% endfor %}", "{\"d\": {\"a\": 1, \"b\": [2]}}", "a=1,b=[2],");
    expect("{% for k, v in d | items %}{{ k }}{{ v }}{% endfor %}", "{\"d\": {\"x\": \"y\"}}", "xy");
    expect("{% for x in range(10) if x is odd %}{{ x }}{% if loop.last %}!{% endif %}{% endfor %}", NULL, "13579!");
    expect("{% for x in range(5) %}{% if x == 3 %}{% break %}{% endif %}{% if x == 1 %}{% continue %}{% endif %}{{ x }}"
           "{% endfor %}", NULL, "02");
    expect("{% for c in 'hé' %}[{{ c }}]{% endfor %}", NULL, "[h][é]");
    expect("{% for x in [1,2] %}{{ loop.previtem }}-{{ loop.nextitem }} {% endfor %}", NULL, "-2 1- ");
    /* a set inside a loop stays inside it */
    expect("{% set x = 1 %}{% for i in [5] %}{% set x = i %}{{ x }}{% endfor %}{{ x }}", NULL, "51");
    expect("{% for m in undefined_list %}x{% endfor %}ok", NULL, "ok");
}

Test(jinja, if_set_namespace_macro)
{
    expect("{% if a %}A{% elif b %}B{% else %}C{% endif %}", "{\"b\": 1}", "B");
    expect("{% set ns = namespace(n=0, s='') %}{% for i in [1,2,3] %}{% set ns.n = ns.n + i %}{% endfor %}{{ ns.n }}",
           NULL, "6");
    expect("{% set ns = namespace() %}{% set ns.x = 'v' %}{{ ns.x }}", NULL, "v");
    expect("{% set b %}in {{ 1 + 1 }}{% endset %}[{{ b }}]", NULL, "[in 2]");
    expect("{% macro greet(name, p='!') %}hi {{ name }}{{ p }}{% endmacro %}{{ greet('a') }} {{ greet('b', p='?') }}",
           NULL, "hi a! hi b?");
    expect("{{ 'y' if x else 'n' }}{{ 'z' if x }}", "{\"x\": 0}", "n");
    expect("{% generation %}kept{% endgeneration %}", NULL, "kept");
}

Test(jinja, operators)
{
    expect("{{ 1 + 2 * 3 - 4 }} {{ 2 ** 10 }} {{ 'ab' * 2 }} {{ [1] + [2] }} {{ 10 % 4 }}", NULL, "3 1024 abab [1, 2] 2");
    expect("{{ 1 < 2 < 3 }} {{ 'a' in 'cat' }} {{ 2 not in [1] }} {{ 'k' in d }} {{ not x }}", "{\"d\": {\"k\": 0}}",
           "True True True True True");
    expect("{{ x or 'dflt' }} {{ 0 and 1 }} {{ 1 and 'last' }}", NULL, "dflt 0 last");
    expect("{{ a == b }} {{ [1, {'x': 2}] == [1, {'x': 2}] }}", "{\"a\": {\"p\": [1]}, \"b\": {\"p\": [1]}}", "True True");
    expect("{{ -x }} {{ (1, 2) }} {{ (1,) }} {{ (1, 2) == [1, 2] }}", "{\"x\": 3}", "-3 (1, 2) (1,) False");
}

Test(jinja, strings_and_slices)
{
    const char *v = "{\"s\": \"  Hello, World  \", \"u\": \"héllo\"}";
    expect("[{{ s.strip() }}][{{ s.lstrip() }}][{{ s.rstrip() }}][{{ 'xxaxx'.strip('x') }}]", v,
           "[Hello, World][Hello, World  ][  Hello, World][a]");
    expect("{{ 'a b  c'.split() }} {{ 'a</t>b'.split('</t>')[-1] }} {{ 'a,b,c'.split(',', 1) }}", NULL,
           "['a', 'b', 'c'] b ['a', 'b,c']");
    expect("{{ s.startswith('  He') }} {{ s.endswith('x') }} {{ s.upper() }} {{ s.lower() }}", v,
           "True False   HELLO, WORLD     hello, world  ");
    expect("{{ 'aXbX'.replace('X', '-') }} {{ u[1] }} {{ u[-1] }} {{ u[1:3] }} {{ u[::-1] }} {{ u[:-1] }}", v,
           "a-b- é o él olléh héll");
    expect("{{ [1,2,3,4][1:] }} {{ [1,2,3,4][::-2] }} {{ [1,2,3][5] }}|", NULL, "[2, 3, 4] [4, 2] |");
    expect("{{ ', '.join(['a', 'b']) }} {{ 'abc'.find('c') }} {{ 'ab'.title() }}", NULL, "a, b 2 Ab");
    expect("{{ d.get('a') }} {{ d.get('z', 0) }} {{ d.keys() | list }} {{ d.values() | list }}", "{\"d\": {\"a\": 1}}",
           "1 0 ['a'] [1]");
}

Test(jinja, filters)
{
    expect("[{{ '  x \\n' | trim }}] {{ [1,2] | length }} {{ 'hé' | length }} {{ x | length }}", NULL, "[x] 2 2 0");
    expect("{{ 3 | string ~ 'a' }} {{ 'Ab' | lower }}{{ 'Ab' | upper }} {{ x | default('d') }} {{ '' | default('e', true) }}",
           NULL, "3a abAB d e");
    expect("{{ [1,2,3] | first }}{{ [1,2,3] | last }} {{ ['a','b'] | join('-') }} {{ 'aa' | replace('a', 'b') }}", NULL,
           "13 a-b bb");
    const char *msgs = "{\"m\": [{\"role\": \"system\", \"c\": 1}, {\"role\": \"user\", \"c\": 2}, {\"role\": \"user\", \"c\": 3}]}";
    expect("{{ m | selectattr('role', 'equalto', 'user') | map(attribute='c') | list }}", msgs, "[2, 3]");
    expect("{{ m | rejectattr('role', 'equalto', 'user') | list | length }} {{ [0, 1, 2] | select | list }}", msgs, "1 [1, 2]");
    expect("{{ ['a', 'code', 'b'] | reject('equalto', 'code') | join(', ') }}", NULL, "a, b");
    expect("{{ {'a': 'é', 'b': [1, 2.5, true, none]} | tojson }}", NULL, "{\"a\": \"é\", \"b\": [1, 2.5, true, null]}");
    expect("{{ {'a': {'b': []}} | tojson(indent=2) }}", NULL, "{\n  \"a\": {\n    \"b\": []\n  }\n}");
    expect("{{ 'x\"\\n' | tojson }}", NULL, "\"x\\\"\\n\"");
}

Test(jinja, tests)
{
    expect("{{ x is defined }} {{ y is undefined }} {{ none is none }} {{ 's' is string }} {{ d is mapping }} "
           "{{ [1] is iterable }} {{ 1 is number }} {{ false is false }} {{ 3 is odd }} {{ 'a' is equalto 'a' }} "
           "{{ 1 is in [1] }} {{ x is not none }}",
           "{\"x\": 1, \"d\": {}}", "True True True True True True True True True True True True");
}

Test(jinja, globals)
{
    expect("{{ range(3) | list }} {{ strftime_now('%Y') }}", NULL, "[0, 1, 2] 1971");
    refused("{{ raise_exception('roles must alternate') }}", NULL, "roles must alternate");
}

/* ---- errors and refusals ---- */

Test(jinja, errors_name_file_line_col)
{
    refused("ok\n{{ 1 +* }}", NULL, "t.jinja:2:");
    refused("{% if x %}", NULL, "missing '{% endif %}'");
    refused("{% endfor %}", NULL, "unexpected 'endfor'");
    refused("{{ 'unterminated }}", NULL, "unterminated string");
    refused("{{ x.y }}", NULL, "'x' is undefined");
    refused("{{ f() }}", NULL, "'f' is undefined and cannot be called");
    refused("{{ x + 1 }}", NULL, "'x' is undefined");
    refused("{{ 'a' + 1 }}", NULL, "unsupported operand types for +");
    refused("{{ 1 // 0 }}", NULL, "by zero");
    refused("{% set x = 1 %}{% set x.y = 2 %}", NULL, "not a namespace()");
}

Test(jinja, refuses_what_it_does_not_implement)
{
    refused("{% extends 'base' %}", NULL, "'{% extends %}' is not supported");
    refused("{% include 'x' %}", NULL, "'{% include %}' is not supported");
    refused("{% call m() %}{% endcall %}", NULL, "'{% call %}' is not supported");
    refused("{{ x | wordwrap }}", NULL, "filter 'wordwrap' is not supported");
    refused("{{ x is sameish 1 }}", NULL, "test 'sameish' is not supported");
    refused("{{ 'a'.zfill(3) }}", NULL, "string method 'zfill' is not supported");
    refused("{{ [1].append(2) }}", NULL, "list method 'append' is not supported");
    refused("{{ '%s' % 1 }}", NULL, "string formatting");
    refused("{% for x in [1] %}{{ loop.cycle('a') }}{% endfor %}", NULL, "loop.cycle is not supported");
    refused("{{ cycler() }}", NULL, "'cycler()' is not supported");
    refused("{{ x | tojson(sort_keys=true) }}", "{\"x\": 1}", "sort_keys");
}

Test(jinja, limits)
{
    jinja_template *t;
    const char *loop = "{% for a in range(1000) %}{% for b in range(1000) %}{% for c in range(1000) %}{% endfor %}"
                       "{% endfor %}{% endfor %}";
    cr_assert_eq(jinja_compile(loop, strlen(loop), "t.jinja", &t), DS_OK);
    char *out;
    jinja_limits lim = {.max_steps = 100000};
    cr_expect_eq(jinja_render(t, NULL, &lim, &out, NULL), DS_EDATA);
    cr_expect(strstr(ds_errmsg(), "steps") != NULL, "%s", ds_errmsg());
    jinja_free(t);
    const char *big = "{% for a in range(100000) %}xxxxxxxxxxxxxxxx{% endfor %}";
    cr_assert_eq(jinja_compile(big, strlen(big), "t.jinja", &t), DS_OK);
    lim = (jinja_limits){.max_output = 1000};
    cr_expect_eq(jinja_render(t, NULL, &lim, &out, NULL), DS_EDATA);
    cr_expect(strstr(ds_errmsg(), "output passes 1000 bytes") != NULL, "%s", ds_errmsg());
    jinja_free(t);
    const char *rec = "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}";
    cr_assert_eq(jinja_compile(rec, strlen(rec), "t.jinja", &t), DS_OK);
    cr_expect_eq(jinja_render(t, NULL, NULL, &out, NULL), DS_EDATA);
    cr_expect(strstr(ds_errmsg(), "nest") != NULL, "%s", ds_errmsg());
    jinja_free(t);
    char deep[2000] = "{{ ";
    for (int i = 0; i < 900; i++) strcat(deep, "(");
    strcat(deep, "1");
    for (int i = 0; i < 900; i++) strcat(deep, ")");
    strcat(deep, " }}");
    cr_expect_eq(jinja_compile(deep, strlen(deep), "t.jinja", &t), DS_EDATA);
    cr_expect(strstr(ds_errmsg(), "nested too deeply") != NULL, "%s", ds_errmsg());
}
