/* data/tokenizer/tokenizer.h - Hugging Face tokenizers (tokenizer.json), exactly.
 *
 * Byte-level BPE with merges applied by rank, the pre-tokenizer pipeline
 * (Sequence, Split with its regex and behaviour, ByteLevel, Digits, ...),
 * normalizers (NFC, ...), added and special tokens split out of the text
 * before BPE as transformers does, and the BOS/EOS that tokenizer_config.json
 * asks for. A component the tokenizer.json uses but this reader does not
 * implement is refused with an error naming it, never skipped.
 */
#ifndef DS_DATA_TOKENIZER_H
#define DS_DATA_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct tokenizer tokenizer;

/* Load DIR/tokenizer.json and (if present) DIR/tokenizer_config.json. */
int tok_load(const char *dir, tokenizer **out);
/* Load from memory (fuzzing, tests); config may be NULL. `what` names it in errors. */
int tok_load_json(const char *tokenizer_json, size_t len, const char *config_json, size_t config_len,
                  const char *what, tokenizer **out);
void tok_free(tokenizer *t);

/* A growable id buffer. */
typedef struct {
    int32_t *ids;
    size_t n, cap;
} tok_ids;
void tok_ids_free(tok_ids *v);

/* Encode UTF-8 text, appending to out. add_special adds BOS/EOS as
 * transformers does with add_special_tokens=True (tokenizer_config's
 * add_bos_token / add_eos_token, or the post-processor). Special and added
 * tokens written in the text are recognised either way. Invalid UTF-8 is
 * DS_EDATA. */
int tok_encode(const tokenizer *t, const char *text, size_t len, bool add_special, tok_ids *out);
/* Decode ids to UTF-8 (malloc'd, NUL-terminated), as transformers'
 * decode(ids, skip_special_tokens=skip_special). */
int tok_decode(const tokenizer *t, const int32_t *ids, size_t n, bool skip_special, char **text);

int tok_vocab_size(const tokenizer *t);      /* largest id + 1 */
int tok_bos_id(const tokenizer *t);          /* -1 if none */
int tok_eos_id(const tokenizer *t);
int tok_pad_id(const tokenizer *t);
bool tok_adds_bos(const tokenizer *t);       /* add_special puts BOS first */

/* The model's token ids (model_config's bos_id, eos_id, pad_id: from
 * generation_config.json, else config.json; -1 = none), for the ids the
 * tokenizer does not name itself: each fills only an id the tokenizer has
 * none for, and only if it is a token of the vocabulary. So the order is
 * tokenizer_config.json (its names resolved through the vocabulary), then
 * generation_config.json, then config.json.
 *
 * Whether BOS is added is not changed here: it was decided at load by the
 * tokenizer's own rules (tokenizer_config.json's add_bos_token, its class's
 * default, or tokenizer.json's post-processor), and this only supplies the
 * id such a rule asked for. The one rule that waits for it: a folder with
 * no tokenizer_config.json and a tokenizer.json without a post-processor is
 * read as transformers' AutoTokenizer reads it for a Llama-family model
 * (the only kind ds-ft trains), i.e. as LlamaTokenizerFast, which adds BOS
 * (add_bos_token = true) and not EOS; the BOS is the model's bos_id, where
 * transformers would add a "<s>" token such vocabularies lack. A
 * tokenizer.json post-processor, when there is one, keeps deciding. Call it
 * once, after tok_load and before encoding (not concurrently with it). */
void tok_set_default_ids(tokenizer *t, int bos, int eos, int pad);

/* SHA-256 (64 hex digits) of the bytes the tokenizer was built from:
 * tokenizer.json and tokenizer_config.json (or its absence). Two tokenizers
 * with the same digest and the same ids (tok_bos_id, ...) encode alike. */
const char *tok_digest(const tokenizer *t);
/* Id of a token string (vocabulary or added token), or -1. */
int tok_token_id(const tokenizer *t, const char *token);
/* The token string of an id (byte-level form, e.g. "Ġthe"), or NULL. */
const char *tok_token_str(const tokenizer *t, int id);
bool tok_is_special(const tokenizer *t, int id);
/* tok_is_added(t, id) : id is an added token (special or not). */
bool tok_is_added(const tokenizer *t, int id);
/* tok_adds_eos(t) : add_special puts EOS last. */
bool tok_adds_eos(const tokenizer *t);
/* tok_merge_count(t) : the number of BPE merges; tok_merge_at(t, rank, &l, &r)
 * : merge `rank`'s two parts as vocabulary strings ("Ġ", "t"), @return false
 * for a rank out of range. (For writers of other formats: GGUF.) */
int tok_merge_count(const tokenizer *t);
bool tok_merge_at(const tokenizer *t, int rank, const char **left, const char **right);

#endif
