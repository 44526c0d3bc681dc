/* Data cleaning's PII scanner: every type found and masked with its typed
 * placeholder, look-alikes left alone (a failed Luhn or NHS check, invalid
 * SSN areas and NINO prefixes, section numbers, times), and not one match
 * in a corpus of ordinary clinical text (tests/data/clean/medical_notes.txt:
 * blood pressures, lab values, dates, doses, ICD/NDC/LOINC codes). */
#include "testutil.h"

#include "core/files.h"
#include "core/status.h"
#include "data/clean/clean_internal.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

static char *masked(const char *text)
{
    clean_pii_matches m = {0};
    cr_assert_eq(clean_pii_find(text, strlen(text), &m), DS_OK);
    bool mask[CLEAN_PII_NCAT];
    for (int c = 0; c < CLEAN_PII_NCAT; c++) mask[c] = true;
    size_t n;
    char *out = clean_pii_mask(text, strlen(text), &m, mask, &n);
    cr_assert(out);
    cr_expect_eq(n, strlen(out));
    clean_pii_matches_free(&m);
    return out;
}

Test(pii, every_type_found_and_masked)
{
    static const struct { const char *in, *out; } cases[] = {
        {"Write to jane.doe+notes@mail.example.co.uk today.", "Write to <EMAIL> today."},
        {"call (415) 555-0132 now", "call <PHONE> now"},
        {"call 415-555-0132 or 415.555.0132", "call <PHONE> or <PHONE>"},
        {"toll free 1-800-555-0199.", "toll free <PHONE>."},
        {"London +44 20 7946 0958, local 020 7946 0958", "London <PHONE>, local <PHONE>"},
        {"server 192.168.1.20 and 10.0.0.1", "server <IP_ADDRESS> and <IP_ADDRESS>"},
        {"v6 2001:db8:85a3::8a2e:370:7334 and 2001:0db8:0000:0000:0000:ff00:0042:8329",
         "v6 <IP_ADDRESS> and <IP_ADDRESS>"},
        {"card 4111 1111 1111 1111, 5555-5555-5555-4444, 378282246310005",
         "card <CREDIT_CARD>, <CREDIT_CARD>, <CREDIT_CARD>"},
        {"SSN 123-45-6789.", "SSN <US_SSN>."},
        {"NI AB 12 34 56 C or AB123456C", "NI <UK_NINO> or <UK_NINO>"},
        {"NHS number 943 476 5919", "NHS number <NHS_NUMBER>"},
        {"MBI 1EG4-TE5-MK73", "MBI <US_MBI>"},
        {"fetch https://admin:s3cret@example.com/data", "fetch https://<CREDENTIALS>@example.com/data"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *m = masked(cases[i].in);
        cr_expect_str_eq(m, cases[i].out, "case %zu", i);
        free(m);
    }
}

Test(pii, look_alikes_that_are_not_pii)
{
    static const char *const texts[] = {
        "4111111111111112",            /* Luhn fails */
        "000-12-3456 and 666-12-3456", /* invalid SSN areas */
        "943 476 5910",                /* NHS check digit wrong (and no phone shape) */
        "QQ 12 34 56 C",               /* Q is not a NINO prefix letter */
        "1.2.3.4 and 256.1.1.1",       /* section number; out of range */
        "10:30:45 and std::vector",    /* times and code */
        "jane@localhost",              /* no dotted domain */
    };
    clean_pii_matches m = {0};
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        cr_assert_eq(clean_pii_find(texts[i], strlen(texts[i]), &m), DS_OK);
        cr_expect_eq(m.n, 0, "'%s': %zu match(es), the first %s", texts[i], m.n,
                     m.n ? clean_pii_type_name(m.m[0].type) : "");
    }
    clean_pii_matches_free(&m);
}

Test(pii, no_false_positives_in_clinical_text)
{
    char *path = tu_source_path("tests/data/clean/medical_notes.txt"), *text;
    size_t len;
    cr_assert_eq(ds_read_file(path, &text, &len), DS_OK, "%s", ds_errmsg());
    clean_pii_matches m = {0};
    cr_assert_eq(clean_pii_find(text, len, &m), DS_OK);
    for (size_t k = 0; k < m.n; k++)
        cr_expect(false, "clinical text read as %s: '%.*s'", clean_pii_type_name(m.m[k].type),
                  (int)(m.m[k].end - m.m[k].start), text + m.m[k].start);
    cr_expect_gt(len, 3000, "the corpus is there");
    clean_pii_matches_free(&m);
    free(text);
    free(path);
}

