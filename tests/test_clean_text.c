/* Data cleaning's record text: what each dataset type gives the rules (the
 * reply, or every field), MedMCQA's and MedQA's layouts, the type told from
 * the fields, and a bad record named by file:line and field. */
#include "testutil.h"

#include "core/status.h"
#include "data/clean/clean_internal.h"

#include <criterion/criterion.h>
#include <jansson.h>
#include <string.h>

static void text_case(const char *type, const char *json, const char *counted, const char *all)
{
    json_t *o = json_loads(json, 0, NULL);
    cr_assert(o, "%s", json);
    clean_text t = {0};
    cr_assert_eq(clean_text_of(type, false, o, "x.jsonl", 3, &t), DS_OK, "%s: %s", type, ds_errmsg());
    cr_expect_str_eq(t.counted, counted, "%s: the text that counts", type);
    cr_expect_str_eq(t.all, all, "%s: every field", type);
    cr_assert_eq(clean_text_of(type, true, o, "x.jsonl", 3, &t), DS_OK);
    cr_expect_str_eq(t.counted, all, "%s: text: all", type);
    cr_expect_str_eq(clean_guess_type(o), type, "the type told from the fields");
    clean_text_free(&t);
    json_decref(o);
}

Test(text, each_dataset_type)
{
    text_case("alpaca", "{\"instruction\": \"Name it.\", \"input\": \"a drug\", \"output\": \"Aspirin.\"}", "Aspirin.",
              "Name it.\n\na drug\nAspirin.");
    text_case("prompt_completion", "{\"prompt\": \"Q?\", \"completion\": \"A.\"}", "A.", "Q?\nA.");
    text_case("text", "{\"text\": \"Whole text.\"}", "Whole text.", "Whole text.");
    text_case("messages",
              "{\"messages\": [{\"role\": \"system\", \"content\": \"S\"}, {\"role\": \"user\", \"content\": \"U1\"},"
              "{\"role\": \"assistant\", \"content\": \"A1\"}, {\"role\": \"user\", \"content\": \"U2\"},"
              "{\"role\": \"assistant\", \"content\": \"A2\"}]}",
              "A1\nA2", "S\nU1\nA1\nU2\nA2");
    text_case("preference", "{\"prompt\": \"P\", \"chosen\": \"Good.\", \"rejected\": \"Bad.\"}", "Good.\nBad.",
              "P\nGood.\nBad.");
    text_case("mcq", "{\"question\": \"Which?\", \"choices\": [\"x\", \"y\"], \"answer\": 1}", "Which?\nx\ny",
              "Which?\nx\ny");
    text_case("mcq", "{\"question\": \"Q\", \"opa\": \"a\", \"opb\": \"b\", \"opc\": \"c\", \"opd\": \"d\", \"cop\": 2}",
              "Q\na\nb\nc\nd", "Q\na\nb\nc\nd");
    text_case("mcq", "{\"question\": \"Q\", \"options\": {\"A\": \"a\", \"B\": \"b\"}, \"answer_idx\": \"B\"}", "Q\na\nb",
              "Q\na\nb");
}

Test(text, a_bad_record_names_file_line_and_field)
{
    json_t *o = json_loads("{\"instruction\": \"x\"}", 0, NULL);
    clean_text t = {0};
    cr_expect_eq(clean_text_of("alpaca", false, o, "x.jsonl", 7, &t), DS_EDATA);
    cr_expect(strstr(ds_errmsg(), "x.jsonl:7") && strstr(ds_errmsg(), "output"), "%s", ds_errmsg());
    clean_text_free(&t);
    json_decref(o);
}

