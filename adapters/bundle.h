/* adapters/bundle.h - one file to share an adapter: `ds-ft export` / `import`.
 *
 * Layout: the 8-byte magic "DSFTPACK", then one zstd frame (with zstd's own
 * content checksum) holding a JSON manifest line
 *   {"format": "ds-ft-adapter", "version": 1, "files": [{"name", "size", "sha256"}, ...]}
 * followed by the files' bytes in manifest order. Import verifies every
 * size and SHA-256 before anything is written, then writes the folder
 * atomically; any mismatch is DS_EDATA naming the file. */
#ifndef DS_ADAPTERS_BUNDLE_H
#define DS_ADAPTERS_BUNDLE_H

/* Pack the files of adapter folder `dir` (adapter_config.json,
 * adapter_model.safetensors, README.md if present) into `out`. */
int bundle_export(const char *dir, const char *out);
/* Verify and unpack `in` into folder `out_dir`. */
int bundle_import(const char *in, const char *out_dir);

#endif
