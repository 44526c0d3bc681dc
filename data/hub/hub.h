/* data/hub/hub.h - Hugging Face model ids, found in the local Hub cache as
 * transformers finds them offline.
 *
 * A name that is an existing path is that path. Otherwise "org/name" (or
 * "org/name@revision", a ref name such as main or refs/pr/3, or a commit
 * hash) is looked up in the Hub cache that `huggingface-cli download` and
 * transformers fill:
 *
 *     CACHE/models--org--name/refs/REVISION          the commit hash of a ref
 *     CACHE/models--org--name/snapshots/COMMIT/      the files of that commit
 *
 * CACHE is $HF_HUB_CACHE, else $HUGGINGFACE_HUB_CACHE (its old name), else
 * $HF_HOME/hub, else $XDG_CACHE_HOME/huggingface/hub, else
 * ~/.cache/huggingface/hub - huggingface_hub's own order. Nothing is ever
 * downloaded: a model found nowhere is one DS_ENOINPUT message naming the
 * key that pointed at it, every place looked, and the command that
 * downloads it.
 */
#ifndef DS_DATA_HUB_H
#define DS_DATA_HUB_H

#include <stdbool.h>

typedef enum {
    HUB_MODEL,       /* a model folder: config.json and safetensors weights */
    HUB_TOKENIZER,   /* a tokenizer folder: tokenizer.json */
} hub_kind;

/* How a name was found. */
typedef struct {
    bool from_cache;      /* true: a Hub id found in the cache; false: a path as it is */
    char revision[128];   /* the revision asked for ("main" when none) */
    char commit[64];      /* the snapshot's commit hash */
} hub_found;

/* hub_resolve() : the folder `name` means. `key` is what pointed at it, for
 * messages ("base_model", "--model", "tokenizer"). A model folder with
 * PyTorch .bin weights and no safetensors is refused here, with the way to
 * get safetensors, since ds-ft reads only those.
 * @return DS_OK with *dir (malloc'd; the path itself or the snapshot folder)
 * and *found filled (found may be NULL), or DS_ENOINPUT "KEY: NAME: no such
 * model folder ..." with the places looked and the download command, or
 * DS_ENOMEM. */
int hub_resolve(const char *name, const char *key, hub_kind what, char **dir, hub_found *found);

/* hub_cache_dir() : the Hub cache folder (malloc'd, NULL when out of memory)
 * and in *from the variable that decided it ("HF_HUB_CACHE", ..., or "HOME"
 * for the default ~/.cache/huggingface/hub). */
char *hub_cache_dir(const char **from);

/* hub_is_model_id() : whether s has the shape of a Hub model id: "org/name"
 * or "org/name@revision", each of org and name letters, digits, '-', '_'
 * and '.', not starting with '.'. */
bool hub_is_model_id(const char *s);

#endif
