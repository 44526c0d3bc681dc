/* finetune/export/export_pre.c - which of llama.cpp's pre-tokenizers a
 * tokenizer.json uses. llama.cpp does not read the regexes from the file: it
 * knows each model family's by name (tokenizer.ggml.pre). Its converter
 * recognises them by hashing the ids of a test text; here the
 * pre-tokenizer's own steps are compared with the ones each name stands
 * for. The regexes are compared after NFC normalization, because llama.cpp's
 * copies of DeepSeek LLM's are NFC-normalized. */
#include "export_internal.h"

#include "core/files.h"
#include "core/mem.h"
#include "core/status.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#define SPLIT "Split:"   /* a Split step, behaviour Isolated, not inverted, and its regex */

/* Names and the steps of the tokenizer.json pre-tokenizer each stands for. */
static const struct {
    const char *name;
    const char *steps[8];
} KNOWN[] = {
    {"deepseek-v3",   /* DeepSeek-V3 / R1 and the tiny model's tokenizer */
     {SPLIT "\\p{N}{1,3}", SPLIT "[一-龥぀-ゟ゠-ヿ]+",
      SPLIT "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| "
            "?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+",
      "ByteLevel"}},
    {"llama-bpe",     /* Llama 3, DeepSeek-R1-Distill-Llama */
     {SPLIT "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
            "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
      "ByteLevel"}},
    {"qwen2",         /* Qwen2, Qwen2.5, Qwen3, DeepSeek-R1-Distill-Qwen */
     {SPLIT "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
            "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
      "ByteLevel"}},
    {"deepseek-llm",  /* DeepSeek LLM 7B/67B (regexes as llama.cpp has them) */
     {SPLIT "[\r\n]",
      SPLIT "\\s?[A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓʕ-ʯͰ-ͳͶͷͻ-ͽͿΆΈ-ΊΌΎ-ΡΣ-ϵϷ-ҁҊ-ԯԱ-ՖႠ-ჅᎠ-Ᏽᏸ-ᏽᲐ-ᲺᲽ-Ჿᴀ-ᴫᵫ-ᵷᵹ-ᶚḀ-ἕἘ-Ἕἠ-ὅὈ-Ὅὐ-ὗὙὛὝὟ-ώᾀ-ᾴᾶ-ᾼ"
            "ιῂ-ῄῆ-ῌῐ-ΐῖ-Ίῠ-Ῥῲ-ῴῶ-ῼℂℇℊ-ℓℕℙ-ℝℤΩℨK-ℭℯ-ℴℹℼ-ℿⅅ-ⅉⅎↃↄⰀ-ⱻⱾ-ⳤⳫ-ⳮⳲⳳꙀ-ꙭꚀ-ꚛꜢ-ꝯꝱ-ꞇꞋ-ꞎꭰ-ꮿﬀ-ﬆﬓ-ﬗＡ-Ｚａ-ｚ𐐀-𐑏𐒰-𐓓𐓘-𐓻"
            "𐲀-𐲲𐳀-𐳲𑢠-𑣟𞤀-𞥃]+",
      SPLIT "\\s?[!-/:-~！-／：-～‘-‟　-。]+", SPLIT "\\s+$", SPLIT "[一-龥ࠀ-一가-퟿]+", "Digits:individual",
      "ByteLevel"}},
    {"deepseek-coder",  /* DeepSeek-Coder 1.3B-33B */
     {SPLIT "[\r\n]", SPLIT "\\s?\\p{L}+", SPLIT "\\s?\\p{P}+", SPLIT "[一-龥ࠀ-一가-퟿]+", "Digits:individual",
      "ByteLevel"}},
    {"gpt-2", {"ByteLevel:regex"}},
};

/* The names llama.cpp accepts for a byte-level BPE (llama-vocab.cpp, the
 * release node-llama-cpp 3.21.1 ships), for --pre. */
static const char *const ACCEPTED =
    " default llama3 llama-v3 llama-bpe falcon3 falcon-h1 pixtral midm-2.0 lfm2 deepseek-llm deepseek-coder "
    "deepseek-v3 youtu falcon mpt starcoder gpt-2 phi-2 jina-es jina-de gigachat jina-v2-es jina-v2-de a.x-4.0 mellum "
    "modern-bert jais-2 jina-v1-en jina-v2-code roberta-bpe refact command-r qwen2 deepseek-r1-qwen kormo qwen35 "
    "stablelm2 olmo dbrx smaug-bpe poro-chat glm4 chatglm-bpe viking jais tekken smollm codeshell bloom gpt3-finnish "
    "exaone exaone4 exaone-moe chameleon minerva-7b megrez gpt-4o llama4 kanana2 tiny_aya cohere2moe superbpe trillion "
    "granite-docling bailingmoe bailingmoe2 llada-moe seed-coder hunyuan hunyuan-dense joyai-llm kimi-k2 grok-2 afmoe "
    "laguna minimax-m2 solar-open mellum2 ";

bool export_pre_accepted(const char *name)
{
    char padded[64];
    if (!*name || strlen(name) > 40 || strchr(name, ' ')) return false;
    snprintf(padded, sizeof padded, " %s ", name);
    return strstr(ACCEPTED, padded) != NULL;
}

/* s, NFC-normalized (JSON text is valid UTF-8: NULL from utf8proc is out of
 * memory). NULL: out of memory, message set. */
static char *nfc_of(const char *s)
{
    char *nfc = (char *)utf8proc_NFC((const utf8proc_uint8_t *)s);
    if (!nfc) ds_oom(strlen(s), "a normalized pre-tokenizer regex");
    return nfc;
}

/* One step as a signature string ("Split:REGEX", "ByteLevel", ...), or "?"
 * for a step no name uses. @return DS_OK or DS_ENOMEM. */
static int step_signature(const json_t *s, char **out)
{
    const char *type = json_string_value(json_object_get(s, "type"));
    const char *sig = "?";
    if (type && !strcmp(type, "Split")) {
        const json_t *pat = json_object_get(s, "pattern");
        const char *re = json_string_value(json_object_get(pat, "Regex"));
        const char *beh = json_string_value(json_object_get(s, "behavior"));
        if (re && beh && !strcmp(beh, "Isolated") && !json_is_true(json_object_get(s, "invert"))) {
            char *nfc = nfc_of(re);
            *out = nfc ? ds_strdupf(SPLIT "%s", nfc) : NULL;
            free(nfc);
            return *out ? DS_OK : DS_ENOMEM;
        }
    } else if (type && !strcmp(type, "ByteLevel")) {   /* llama.cpp adds no prefix space to a BPE */
        bool prefix = json_is_true(json_object_get(s, "add_prefix_space"));
        bool regex = json_is_true(json_object_get(s, "use_regex"));
        sig = prefix ? "ByteLevel:prefix" : regex ? "ByteLevel:regex" : "ByteLevel";
    } else if (type && !strcmp(type, "Digits")) {
        sig = json_is_true(json_object_get(s, "individual_digits")) ? "Digits:individual" : "Digits";
    }
    *out = ds_strdup(sig);
    return *out ? DS_OK : DS_ENOMEM;
}

/* Whether `have` is the known step; DS_ENOMEM when normalizing it fails. */
static int same_step(const char *have, const char *known, bool *same)
{
    char *nfc = nfc_of(known);
    *same = nfc && !strcmp(have, nfc);
    free(nfc);
    return nfc ? DS_OK : DS_ENOMEM;
}

int export_recognise_pre(const json_t *pre, export_pre_info *info)
{
    memset(info, 0, sizeof *info);
    const json_t *list = json_object_get(pre, "pretokenizers");
    json_t *one = NULL;
    if (!list) list = one = json_pack("[O]", pre ? pre : json_null());
    if (!list) return DS_ENOMEM;   /* jansson's allocation failed: the message is set */
    size_t n = json_array_size(list);
    char **sig = ds_calloc(n + 1, sizeof *sig, "the pre-tokenizer's steps");
    if (!sig) {
        json_decref(one);
        return DS_ENOMEM;
    }
    size_t used = 0;
    int rc = DS_OK;
    for (size_t i = 0; !rc && i < n; i++) {
        rc = step_signature(json_array_get(list, i), &sig[i]);
        if (rc) break;
        info->byte_level |= !strncmp(sig[i], "ByteLevel", 9);
        const char *type = json_string_value(json_object_get(json_array_get(list, i), "type"));
        used += (size_t)snprintf(info->desc + used, used < sizeof info->desc ? sizeof info->desc - used : 0, "%s%s",
                                 i ? " + " : "", type ? type : "?");
        if (used >= sizeof info->desc) used = sizeof info->desc - 1;
    }
    for (size_t k = 0; !rc && k < sizeof KNOWN / sizeof *KNOWN && !info->name; k++) {
        size_t steps = 0;
        while (steps < 8 && KNOWN[k].steps[steps]) steps++;
        bool match = steps == n;
        for (size_t i = 0; !rc && match && i < n; i++) rc = same_step(sig[i], KNOWN[k].steps[i], &match);
        if (!rc && match) info->name = KNOWN[k].name;
    }
    for (size_t i = 0; i < n; i++) free(sig[i]);
    free(sig);
    json_decref(one);
    return rc;
}
