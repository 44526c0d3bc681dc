/* run_info.json and the TensorBoard event file: CRC-32C against RFC 3720's
 * test vectors, the event file's TFRecord framing and protobufs read back
 * with a decoder written here from the .proto field numbers, the data
 * fingerprint against sha256sum, the model fingerprint's documented rule
 * recomputed in Python, and phase times carried over a resume. */
#include "testutil.h"

#include "core/files.h"
#include "core/status.h"
#include "finetune/report/report_internal.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char *g_tmp;
static void setup(void)
{
    cr_assert_eq(chdir(DSFT_SOURCE_DIR_FOR_TESTS), 0);
    g_tmp = tu_tmpdir();
}
TestSuite(report_info, .init = setup);

Test(report_info, crc32c_rfc3720_vectors)
{
    unsigned char zeros[32] = {0}, ones[32], up[32], down[32];
    for (int i = 0; i < 32; i++) {
        ones[i] = 0xFF;
        up[i] = (unsigned char)i;
        down[i] = (unsigned char)(31 - i);
    }
    cr_assert_eq(crc32c(zeros, 32), 0x8A9136AAu);
    cr_assert_eq(crc32c(ones, 32), 0x62A8AB43u);
    cr_assert_eq(crc32c(up, 32), 0x46DD794Eu);
    cr_assert_eq(crc32c(down, 32), 0x113FDB5Cu);
    cr_assert_eq(crc32c("123456789", 9), 0xE3069283u);
}

/* ------------------------------------------------------------ reading the event file back */

static uint64_t le(const unsigned char *p, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

static uint64_t varint(const unsigned char **p, const unsigned char *end)
{
    uint64_t v = 0;
    for (int shift = 0; *p < end; shift += 7) {
        unsigned char c = *(*p)++;
        v |= (uint64_t)(c & 0x7F) << shift;
        if (!(c & 0x80)) return v;
    }
    cr_assert_fail("a varint runs past its message");
    return 0;
}

/* One protobuf field: number, wire type, and its varint / fixed / bytes value. */
typedef struct {
    int field, wire;
    uint64_t v;
    const unsigned char *bytes;
    size_t len;
} pb_field;

static bool next_field(const unsigned char **p, const unsigned char *end, pb_field *f)
{
    if (*p >= end) return false;
    uint64_t key = varint(p, end);
    f->field = (int)(key >> 3);
    f->wire = (int)(key & 7);
    switch (f->wire) {
    case 0: f->v = varint(p, end); break;
    case 1: cr_assert(*p + 8 <= end); f->v = le(*p, 8); *p += 8; break;
    case 5: cr_assert(*p + 4 <= end); f->v = le(*p, 4); *p += 4; break;
    case 2:
        f->len = (size_t)varint(p, end);
        cr_assert(*p + f->len <= end, "a field runs past its message");
        f->bytes = *p;
        *p += f->len;
        break;
    default: cr_assert_fail("wire type %d", f->wire);
    }
    return true;
}

typedef struct {
    double wall_time;
    int64_t step;
    char file_version[32];
    int session_status;             /* -1 none */
    char tags[16][64];
    float values[16];
    int nvalues;
} event_seen;

static void read_event(const unsigned char *p, size_t n, event_seen *e)
{
    memset(e, 0, sizeof *e);
    e->session_status = -1;
    const unsigned char *end = p + n;
    pb_field f;
    while (next_field(&p, end, &f)) {
        if (f.field == 1 && f.wire == 1) memcpy(&e->wall_time, &f.v, 8);
        else if (f.field == 2 && f.wire == 0) e->step = (int64_t)f.v;
        else if (f.field == 3 && f.wire == 2) snprintf(e->file_version, sizeof e->file_version, "%.*s", (int)f.len, f.bytes);
        else if (f.field == 7 && f.wire == 2) {   /* SessionLog */
            const unsigned char *q = f.bytes;
            pb_field g;
            while (next_field(&q, f.bytes + f.len, &g))
                if (g.field == 1 && g.wire == 0) e->session_status = (int)g.v;
        } else if (f.field == 5 && f.wire == 2) {   /* Summary { repeated Value value = 1 } */
            const unsigned char *q = f.bytes;
            pb_field g;
            while (next_field(&q, f.bytes + f.len, &g)) {
                cr_assert(g.field == 1 && g.wire == 2 && e->nvalues < 16);
                const unsigned char *r = g.bytes;
                pb_field h;
                while (next_field(&r, g.bytes + g.len, &h)) {
                    if (h.field == 1 && h.wire == 2)
                        snprintf(e->tags[e->nvalues], sizeof e->tags[0], "%.*s", (int)h.len, h.bytes);
                    else if (h.field == 2 && h.wire == 5) {
                        uint32_t u = (uint32_t)h.v;
                        memcpy(&e->values[e->nvalues], &u, 4);
                    } else cr_assert_fail("Value field %d", h.field);
                }
                e->nvalues++;
            }
        } else cr_assert_fail("Event field %d wire %d", f.field, f.wire);
    }
}

/* Every TFRecord of the file, its CRCs checked. */
static int read_records(const char *path, event_seen *ev, int max)
{
    char *data;
    size_t len;
    cr_assert_eq(ds_read_file(path, &data, &len), 0);
    const unsigned char *p = (const unsigned char *)data, *end = p + len;
    int n = 0;
    while (p < end) {
        cr_assert(p + 12 <= end && n < max);
        uint64_t rl = le(p, 8);
        cr_assert_eq((uint32_t)le(p + 8, 4), crc32c_masked(p, 8), "length CRC of record %d", n);
        cr_assert(p + 12 + rl + 4 <= end, "record %d runs past the end", n);
        cr_assert_eq((uint32_t)le(p + 12 + rl, 4), crc32c_masked(p + 12, rl), "data CRC of record %d", n);
        read_event(p + 12, rl, &ev[n++]);
        p += 12 + rl + 4;
    }
    free(data);
    return n;
}

static char *only_event_file(const char *dir)
{
    DIR *d = opendir(dir);
    cr_assert(d, "no %s", dir);
    char *found = NULL;
    for (struct dirent *e; (e = readdir(d));)
        if (strstr(e->d_name, "tfevents")) {
            cr_assert(!found, "two event files");
            found = ds_path_join(dir, e->d_name);
        }
    closedir(d);
    cr_assert(found);
    return found;
}

Test(report_info, tensorboard_events_read_back)
{
    report_tb *tb;
    cr_assert_eq(report_tb_open(g_tmp, 0, &tb), DS_OK, "%s", ds_errmsg());
    json_t *train = json_loads("{\"step\":5,\"epoch\":0.5,\"loss\":1.2345678,\"lr\":0.0001,\"peak_mem_bytes\":123456789,"
                               "\"rewards/margins\":-0.333333333}", 0, NULL);
    json_t *eval = json_loads("{\"step\":5,\"eval\":\"quiz\",\"model\":\"adapter\",\"n\":4,\"acc\":0.75}", 0, NULL);
    cr_assert_eq(report_tb_row(tb, train), DS_OK);
    cr_assert_eq(report_tb_row(tb, eval), DS_OK);
    report_tb_close(tb);
    char *dir = ds_path_join(g_tmp, "tensorboard"), *path = only_event_file(dir);
    event_seen ev[8];
    int n = read_records(path, ev, 8);
    cr_assert_eq(n, 4);
    cr_assert_str_eq(ev[0].file_version, "brain.Event:2");
    cr_assert(ev[0].wall_time > 1.5e9, "wall_time %f is not a Unix time", ev[0].wall_time);
    cr_assert_eq(ev[1].session_status, 1, "no SessionLog START");
    cr_assert_eq(ev[1].step, 0);
    cr_assert_eq(ev[2].step, 5);
    cr_assert_eq(ev[2].nvalues, 5);
    const char *tags[] = {"train/epoch", "train/loss", "train/lr", "train/peak_mem_bytes", "train/rewards/margins"};
    const float values[] = {0.5f, 1.2345678f, 0.0001f, 123456789.0f, -0.33333333f};   /* as metrics.jsonl prints them */
    for (int i = 0; i < 5; i++) {
        cr_assert_str_eq(ev[2].tags[i], tags[i]);
        cr_assert_eq(ev[2].values[i], values[i], "%s: %.9g", tags[i], ev[2].values[i]);
    }
    cr_assert_eq(ev[3].nvalues, 2);
    cr_assert_str_eq(ev[3].tags[0], "eval/quiz/n");
    cr_assert_eq(ev[3].values[0], 4.0f);
    cr_assert_str_eq(ev[3].tags[1], "eval/quiz/acc");
    cr_assert_eq(ev[3].values[1], 0.75f);
    json_decref(train);
    json_decref(eval);
    free(path);
    free(dir);
}

/* ------------------------------------------------------------ run_info.json */

static char *command_output(const char *cmd)
{
    FILE *p = popen(cmd, "r");
    cr_assert(p, "%s", cmd);
    char buf[256] = "";
    char *ok = fgets(buf, sizeof buf, p);
    int st = pclose(p);
    cr_assert(ok && st == 0, "%s failed", cmd);
    buf[strcspn(buf, " \n")] = '\0';
    return strdup(buf);
}

static json_t *load_info(const char *dir)
{
    char *path = ds_path_join(dir, "run_info.json");
    json_t *o = json_load_file(path, 0, NULL);
    cr_assert(json_is_object(o), "%s", path);
    free(path);
    return o;
}

Test(report_info, fingerprints)
{
    char *m = ds_path_join(g_tmp, "metrics.jsonl");
    cr_assert_eq(ds_write_file(m, "{\"step\":1,\"loss\":1}\n", 20), 0);
    report_info *ri;
    cr_assert_eq(report_info_open(g_tmp, false, &ri), DS_OK);
    report_info_device(ri, "cpu", "CPU");
    cr_assert_eq(report_info_model(ri, "models/tiny", "models/tiny"), DS_OK, "%s", ds_errmsg());
    cr_assert_eq(report_info_data(ri, "train", "data/tiny/train.jsonl"), DS_OK, "%s", ds_errmsg());
    cr_assert_eq(report_info_data(ri, "eval", "data/none.jsonl"), DS_ENOINPUT);
    cr_assert_eq(report_update(ri, "finished"), DS_OK, "%s", ds_errmsg());
    report_info_free(ri);
    json_t *info = load_info(g_tmp);
    cr_assert_str_eq(json_string_value(json_object_get(info, "state")), "finished");
    json_t *data = json_array_get(json_object_get(info, "data"), 0);
    char *want = command_output("sha256sum data/tiny/train.jsonl");
    cr_assert_str_eq(json_string_value(json_object_get(data, "sha256")), want);
    free(want);
    /* the model: every file's entry, and the folder's digest, as the rule in report.h says (recomputed in Python) */
    const char *py =
        "python3 -c \"import hashlib,os,struct\n"
        "d='models/tiny'; lines=''\n"
        "for n in sorted(f for f in os.listdir(d) if not f.startswith('.') and os.path.isfile(os.path.join(d,f))):\n"
        "  b=open(os.path.join(d,n),'rb').read()\n"
        "  if n.endswith('.safetensors'):\n"
        "    s=8+struct.unpack('<Q',b[:8])[0]; t=len(b)-s; K=65536\n"
        "    h=b[:s]+(b''.join(b[s+(t-K)//15*k:s+(t-K)//15*k+K] for k in range(16)) if t>16*K else b[s:])\n"
        "  else: h=b\n"
        "  lines+='%s %d %s\\n'%(n,len(b),hashlib.sha256(h).hexdigest())\n"
        "print(hashlib.sha256(lines.encode()).hexdigest())\"";
    want = command_output(py);
    json_t *model = json_object_get(info, "model");
    cr_assert_str_eq(json_string_value(json_object_get(model, "sha256")), want);
    free(want);
    want = command_output("sha256sum models/tiny/config.json");
    json_t *f = json_array_get(json_object_get(model, "files"), 0);
    cr_assert_str_eq(json_string_value(json_object_get(f, "name")), "config.json");
    cr_assert_str_eq(json_string_value(json_object_get(f, "sha256")), want);
    free(want);
    char *html = ds_path_join(g_tmp, "report.html");
    cr_assert(ds_exists(html), "report_update writes report.html too");
    free(html);
    json_decref(info);
    free(m);
}

Test(report_info, phases_add_up_over_a_resume)
{
    char *m = ds_path_join(g_tmp, "metrics.jsonl");
    cr_assert_eq(ds_write_file(m, "{\"step\":1,\"loss\":1}\n", 20), 0);
    report_info *ri;
    cr_assert_eq(report_info_open(g_tmp, false, &ri), DS_OK);
    usleep(20000);
    report_info_phase(ri, "load");
    usleep(30000);
    report_info_phase(ri, "train");
    cr_assert_eq(report_update(ri, "interrupted"), DS_OK, "%s", ds_errmsg());
    report_info_free(ri);
    json_t *first = load_info(g_tmp);
    double load1 = json_real_value(json_object_get(json_object_get(first, "phases"), "load"));
    double train1 = json_real_value(json_object_get(json_object_get(first, "phases"), "train"));
    cr_assert(load1 >= 0.02 && train1 >= 0.03, "load %g, train %g", load1, train1);

    cr_assert_eq(report_info_open(g_tmp, true, &ri), DS_OK);
    usleep(10000);
    report_info_phase(ri, "train");
    cr_assert_eq(report_update(ri, "finished"), DS_OK);
    report_info_free(ri);
    json_t *second = load_info(g_tmp);
    json_t *phases = json_object_get(second, "phases");
    cr_assert_eq(json_integer_value(json_object_get(second, "sessions")), 2);
    cr_assert_str_eq(json_string_value(json_object_get(second, "started")),
                     json_string_value(json_object_get(first, "started")));
    cr_assert_eq(json_real_value(json_object_get(phases, "load")), load1);
    cr_assert(json_real_value(json_object_get(phases, "train")) >= train1 + 0.01);
    cr_assert_str_eq(json_object_iter_key(json_object_iter(phases)), "load", "phases keep their order");
    json_decref(first);
    json_decref(second);
    free(m);
}
