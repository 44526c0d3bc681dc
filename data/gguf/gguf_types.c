/* data/gguf/gguf_types.c - the ggml tensor types a GGUF file may hold (block
 * sizes and bytes per block as ggml defines them) and the value type names. */
#include "gguf.h"

#include <stdio.h>
#include <string.h>

/* Types ggml has removed (4, 5, 31-33, 36-38) are left empty: a file that
 * uses one is refused. */
static const ggml_type_info TYPES[GGML_NTYPES] = {
    [0] = {"f32", 1, 4},         [1] = {"f16", 1, 2},        [2] = {"q4_0", 32, 18},     [3] = {"q4_1", 32, 20},
    [6] = {"q5_0", 32, 22},      [7] = {"q5_1", 32, 24},     [8] = {"q8_0", 32, 34},     [9] = {"q8_1", 32, 36},
    [10] = {"q2_K", 256, 84},    [11] = {"q3_K", 256, 110},  [12] = {"q4_K", 256, 144},  [13] = {"q5_K", 256, 176},
    [14] = {"q6_K", 256, 210},   [15] = {"q8_K", 256, 292},  [16] = {"iq2_xxs", 256, 66}, [17] = {"iq2_xs", 256, 74},
    [18] = {"iq3_xxs", 256, 98}, [19] = {"iq1_s", 256, 50},  [20] = {"iq4_nl", 32, 18},  [21] = {"iq3_s", 256, 110},
    [22] = {"iq2_s", 256, 82},   [23] = {"iq4_xs", 256, 136}, [24] = {"i8", 1, 1},       [25] = {"i16", 1, 2},
    [26] = {"i32", 1, 4},        [27] = {"i64", 1, 8},       [28] = {"f64", 1, 8},       [29] = {"iq1_m", 256, 56},
    [30] = {"bf16", 1, 2},       [34] = {"tq1_0", 256, 54},  [35] = {"tq2_0", 256, 66},  [39] = {"mxfp4", 32, 17},
    [40] = {"nvfp4", 64, 36},    [41] = {"q1_0", 128, 18},   [42] = {"q2_0", 64, 18},
};

const ggml_type_info *ggml_type_get(int type)
{
    if (type < 0 || type >= GGML_NTYPES || !TYPES[type].name) return NULL;
    return &TYPES[type];
}

size_t ggml_row_bytes(int type, int64_t n)
{
    const ggml_type_info *t = ggml_type_get(type);
    if (!t || n < 0 || n % t->block) return 0;
    return (size_t)(n / t->block) * (size_t)t->bytes;
}

size_t gguf_vtype_size(int t)
{
    switch (t) {
    case GGUF_U8: case GGUF_I8: case GGUF_BOOL: return 1;
    case GGUF_U16: case GGUF_I16: return 2;
    case GGUF_U32: case GGUF_I32: case GGUF_F32: return 4;
    case GGUF_U64: case GGUF_I64: case GGUF_F64: return 8;
    default: return 0;
    }
}

const char *gguf_vtype_name(int t)
{
    static const char *const NAMES[GGUF_NTYPES] = {"u8",   "i8",     "u16",   "i16", "u32", "i32", "f32",
                                                   "bool", "string", "array", "u64", "i64", "f64"};
    return t >= 0 && t < GGUF_NTYPES ? NAMES[t] : "?";
}
