/* finetune/report/report.h - what a run leaves for people to read.
 *
 * Three things, each usable on its own:
 *
 *  - run_info.json: the facts of a run that its other files do not hold, the
 *    machine, the software version, fingerprints of the model and the data,
 *    and where the wall-clock time went. The trainer records them through
 *    report_info_* as the run goes.
 *
 *  - report.html: one self-contained page (inline SVG plots, no script
 *    needed, nothing fetched) read from one or more run folders: metrics.jsonl,
 *    eval/NAME.json, recipe.resolved.yaml, train.log, run_info.json and, when
 *    present, clean_report.json. Several folders are drawn on the same axes.
 *
 *  - a TensorBoard event file (train.tensorboard): every metrics row's numbers
 *    as scalar summaries, written by hand (TFRecord framing, masked CRC32C,
 *    Event/Summary protobufs).
 */
#ifndef DS_FINETUNE_REPORT_H
#define DS_FINETUNE_REPORT_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

/* ------------------------------------------------------------ run_info.json */

typedef struct report_info report_info;

/* report_info_open() : start recording the facts of a run whose folder is
 * output_dir: the machine (CPU model, cores, memory, host), the ds-ft version
 * and build, the start time; the phase clock starts now. With resume, an
 * existing OUTPUT_DIR/run_info.json is read back so that phase times add up
 * over the sessions of one run (a missing or unreadable one starts afresh).
 * @return DS_OK, or DS_EINTERNAL when out of memory. */
int report_info_open(const char *output_dir, bool resume, report_info **out);

/* report_info_phase() : add the wall-clock time since the previous call (or
 * since open) to phase `name` ("load", "tokenize", "eval before", "train",
 * ...). Phases keep the order in which they first appear. */
void report_info_phase(report_info *ri, const char *name);

/* report_info_device() : the device the run computes on: backend "cpu" or
 * "cuda" and its name ("NVIDIA H200"). */
void report_info_device(report_info *ri, const char *backend, const char *name);

/* report_info_model() : fingerprint the model folder (and the tokenizer
 * folder when it differs). What is hashed, file by file in name order:
 * a *.safetensors file: its size, its 8-byte header length and JSON header,
 * and 16 evenly spaced 64 KiB samples of its tensor data (first and last
 * included); any other file up to 64 MiB: all its bytes; larger other files
 * are listed by size only. The model's sha256 is that of the lines
 * "NAME SIZE SHA256\n" of its files. Reads a few MiB whatever the model's size.
 * @return DS_OK, or DS_ENOINPUT / DS_EIO naming the file. */
int report_info_model(report_info *ri, const char *model_dir, const char *tokenizer_dir);

/* report_info_data() : sha256 of a whole data file as stored (a .zst file
 * compressed), with its size; role is "train" or "eval".
 * @return DS_OK, or DS_ENOINPUT / DS_EIO naming the file. */
int report_info_data(report_info *ri, const char *role, const char *path);

/* report_info_clean() : what cleaning the training data found, a JSON object
 * as text (records in and out, contamination found, per dataset), kept as
 * run_info.json's "clean". Text that is not a JSON object is ignored. */
void report_info_clean(report_info *ri, const char *json);

/* report_update() : write OUTPUT_DIR/run_info.json (with `state`: "running",
 * "finished", "failed" or "interrupted") and then OUTPUT_DIR/report.html from
 * the run folder, both atomically.
 * @return DS_OK or the status of the first failure (message in ds_errmsg()). */
int report_update(report_info *ri, const char *state);

void report_info_free(report_info *ri);

/* ------------------------------------------------------------ report.html */

/* report_write_html() : read the run folders and write the page to out_path
 * (atomically). One folder is a run's report; several are compared: each
 * plot shows every run that has the metric, with a legend.
 * @return DS_OK; DS_ENOINPUT when a folder or its metrics.jsonl is missing;
 * DS_EDATA naming file:line for a malformed metrics row or eval file; DS_EIO. */
int report_write_html(const char *const *run_dirs, int n_runs, const char *out_path);

/* ------------------------------------------------------------ TensorBoard */

typedef struct report_tb report_tb;

/* report_tb_open() : start OUTPUT_DIR/tensorboard/events.out.tfevents.TIME.HOST.PID
 * with its file_version event and a SessionLog START at first_step (0 for a
 * fresh run, the resumed step + 1 on resume), which makes TensorBoard drop
 * what earlier files logged from that step on.
 * @return DS_OK or DS_EIO naming the file. */
int report_tb_open(const char *output_dir, int64_t first_step, report_tb **out);

/* report_tb_row() : one metrics.jsonl row as one Event at the row's "step":
 * each number except "step" is a scalar, tagged "train/KEY" for a training
 * row and "eval/NAME/KEY" for an evaluation row ({"eval": NAME, ...}). The
 * value is the row's number as metrics.jsonl prints it (8 significant digits)
 * rounded to float32, so the two files agree exactly.
 * @return DS_OK or DS_EIO (the file is flushed after every event). */
int report_tb_row(report_tb *tb, const json_t *row);

/* report_tb_close() : close the file (NULL is a no-op). */
void report_tb_close(report_tb *tb);

#endif
