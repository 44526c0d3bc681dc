/* finetune/train/train_log.h - what a run reports: metrics.jsonl (one JSON object
 * per logged step or evaluation), train.log (the plain lines), and on a
 * terminal one live progress line. Private to finetune/train/. */
#ifndef DS_FINETUNE_TRAIN_LOG_H
#define DS_FINETUNE_TRAIN_LOG_H

#include "finetune/report/report.h"
#include "core/buf.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>

typedef struct {
    FILE *metrics;
    FILE *log;
    bool tty;          /* stderr is a terminal */
    bool live;         /* a live line is on screen */
    bool quiet;        /* say nothing (the ranks of a run other than rank 0) */
    report_tb *tb;     /* TensorBoard events of the same rows (train.tensorboard), or NULL */
    ds_buf pending;    /* lines said before the files were opened, written into train.log at open */
} train_log;

/* Open metrics.jsonl and train.log (appending, or replacing them); until then
 * tlog_say keeps its lines for train.log. A zeroed train_log is ready for tlog_say. */
int tlog_open(train_log *t, const char *output_dir, bool append);
void tlog_close(train_log *t);
/* A line to stderr (above the live line) and to train.log. */
void tlog_say(train_log *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The live line (terminal only; overwritten by the next). */
void tlog_live(train_log *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* On resume: drop the metrics rows of steps after `step` (logged after the
 * checkpoint the run continues from), so that no step appears twice. */
int tlog_keep_until(train_log *t, const char *output_dir, long step);
/* Append a row to metrics.jsonl (takes the reference). @return DS_OK, DS_ENOMEM
 * or DS_EIO (the row could not be written whole). */
int tlog_row(train_log *t, json_t *row);

#endif
