/* Fuzz the Jinja interpreter: any bytes are a template that compiles and
 * renders (with a small conversation, within small limits) or is refused
 * with a status and a message naming the template; never a crash, a hang
 * or unbounded memory. */
#include "core/status.h"
#include "data/template/jinja.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static json_t *vars(void)
{
    static json_t *v;
    if (!v)
        v = json_pack("{s:[{s:s, s:s}, {s:s, s:s}, {s:s, s:s}], s:b, s:s, s:s, s:n, s:n}", "messages", "role", "system",
                      "content", "S", "role", "user", "content", "héllo <think>x</think>", "role", "assistant",
                      "content", "  A\n", "add_generation_prompt", 1, "bos_token", "<s>", "eos_token", "</s>", "tools",
                      "documents");
    return v;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    jinja_template *t;
    if (jinja_compile((const char *)data, size, "fuzz.jinja", &t) != DS_OK) {
        if (strncmp(ds_errmsg(), "fuzz.jinja", 10) != 0) __builtin_trap();   /* errors name the template */
        return 0;
    }
    jinja_limits lim = {.max_output = 1 << 16, .max_memory = 16 << 20, .max_steps = 200000, .max_depth = 64,
                        .now = 1700000000};
    char *out = NULL;
    size_t n = 0;
    int rc = jinja_render(t, vars(), &lim, &out, &n);
    if (rc == DS_OK && (!out || strlen(out) > n || n > lim.max_output)) __builtin_trap();
    if (rc != DS_OK && rc != DS_EDATA && rc != DS_EINTERNAL) __builtin_trap();
    free(out);
    jinja_free(t);
    return 0;
}
