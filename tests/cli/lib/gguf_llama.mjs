// tests/cli/lib/gguf_llama.mjs - the llama.cpp half of tests/cli/gguf_llama.sh.
//
// Loads the GGUF files ds-ft writes into llama.cpp (node-llama-cpp's prebuilt
// build, CPU) and checks them against ds-ft itself:
//   - tokenization of test texts equals `ds-ft tokenize` (and BOS as --special adds it);
//   - f16 (and bf16, and a bitsandbytes 4-bit model's f16) greedy continuations
//     equal `ds-ft generate`, token for token: llama.cpp's tokens, fed back to
//     `ds-ft dump`, are ds-ft's argmax at every step, and the texts are equal;
//   - bf16, q8_0, q4_0 and q4_k_m: llama.cpp computes with the weights the file
//     should hold (ds-ft's argmax with them dequantized, wherever its two best
//     logits are not a near tie), and, for models/tiny, the first token of every
//     continuation equals f16's (q8_0 and bf16 for the larger models too);
//   - the LoRA GGUF applied by llama.cpp gives what `ds-ft generate --adapter`
//     and the merged GGUF give, and changes the output;
//   - qwen2 with zero biases computes what the llama model with the same
//     weights computes in ds-ft (no Q/K reordering for llama.cpp's qwen graphs);
//     qwen2's biases and qwen3's q/k norms change the output; both load and
//     q8_0 keeps f16's first tokens, q4_k_m loads and runs;
//   - DeepSeek-V2/V3 as deepseek2 (models/tiny-moe, the fixtures
//     tiny-deepseek-v2 with YaRN and tiny-deepseek-v3 with the sigmoid router):
//     f16 and the adapter merged into it continue as ds-ft generate does,
//     q8_0 keeps f16's first tokens, q4_k_m (with q5_1 rows) loads and runs.
// WORK_DIR holds the files and folders gguf_llama.sh made.
// usage: node gguf_llama.mjs DSFT WORK_DIR NODE_LLAMA_CPP_INDEX_JS
import {execFileSync} from "node:child_process";
import {readFileSync, writeFileSync} from "node:fs";

const [dsft, work, mod] = process.argv.slice(2);
const {getLlama, LlamaLogLevel} = await import(mod);
const llama = await getLlama({gpu: false, build: "never", logLevel: LlamaLogLevel.error, maxThreads: 1});

let fails = 0;
const ok = (m) => console.log("ok: " + m);
const fail = (m) => { console.log("FAIL: " + m); fails++; };
const ds = (...args) => execFileSync(dsft, args, {encoding: "utf8", maxBuffer: 1 << 26});
const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);

const TEXTS = ["Hello world, this is a test.", " leading space and  two", "Numbers 12345 and 3.14159!",
    "unicode: café naïve 日本語 中文 emoji 🚀", "line\nbreaks\n\n  indented\ttab", "<｜begin▁of▁sentence｜>special inside",
    "The patient has a fever of 39°C."];
const PROMPTS = ["The patient has", "Question: what is the", "In 1999, the", "def main():"];
const N = 12;          // new tokens per continuation
// The gap between ds-ft's two best logits below which llama.cpp may pick the
// other token when it computes with the same weights: it rounds activations
// to bf16 for bf16 weights and to 8 bits for the quantized ones.
const MARGIN = {bf16: 0.05, q8_0: 0.05, q4_0: 0.05, q4_k_m: 0.05};

// ------------------------------------------------------------ ds-ft side

function safetensorsIds(path, ids) {
    const data = Buffer.alloc(8 * ids.length);
    ids.forEach((id, i) => data.writeBigInt64LE(BigInt(id), 8 * i));
    let head = JSON.stringify({input_ids: {dtype: "I64", shape: [1, ids.length], data_offsets: [0, data.length]}});
    head += " ".repeat((8 - head.length % 8) % 8);
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(head.length));
    writeFileSync(path, Buffer.concat([len, Buffer.from(head), data]));
}

// ds-ft's logits for ids (the engine's fp32 forward), as rows of V.
function dsftLogits(model, adapter, ids) {
    const inp = `${work}/dump-in.safetensors`, out = `${work}/dump-out.safetensors`;
    safetensorsIds(inp, ids);
    ds("dump", "--model", model, ...(adapter ? ["--adapter", adapter] : []), "--input", inp, "--out", out, "--force");   // the same scratch file for every call
    const b = readFileSync(out), n = Number(b.readBigUInt64LE(0)), head = JSON.parse(b.subarray(8, 8 + n).toString());
    const t = head[adapter ? "lora.logits" : "base.logits"], [T, V] = t.shape.slice(-2), [s] = t.data_offsets;
    const f = new Float32Array(b.buffer.slice(b.byteOffset + 8 + n + s, b.byteOffset + 8 + n + s + 4 * T * V));
    return Array.from({length: T}, (_, i) => f.subarray(i * V, (i + 1) * V));
}

function top2(row) {
    let a = 0, b = -1;
    for (let i = 1; i < row.length; i++)
        if (row[i] > row[a]) { b = a; a = i; } else if (b < 0 || row[i] > row[b]) b = i;
    return {best: a, gap: row[a] - row[b]};
}

const tokenize = (dir, text, special) => JSON.parse(ds("tokenize", "--tokenizer", dir, "--text", text, ...(special ? ["--special"] : [])));

// ------------------------------------------------------------ llama.cpp side

async function withModel(path, lora, fn) {
    const model = await llama.loadModel({modelPath: path});
    const ctx = await model.createContext({contextSize: 128, threads: 1, batchSize: 64,
        ...(lora ? {lora: {adapters: [{filePath: lora}]}} : {})});
    try { return await fn(model, ctx); } finally { await ctx.dispose(); await model.dispose(); }
}

// Greedy continuations of every prompt: {prompt ids, new ids, text}.
async function greedy(path, lora) {
    return withModel(path, lora, async (model, ctx) => {
        const res = [];
        for (const p of PROMPTS) {
            const seq = ctx.getSequence();
            const prompt = [...(model.tokens.shouldPrependBosToken ? [model.tokens.bos] : []), ...model.tokenize(p, true)];
            const out = [];
            for await (const t of seq.evaluate(prompt, {temperature: 0})) {
                if (t === model.tokens.eos) break;
                out.push(t);
                if (out.length >= N) break;
            }
            res.push({prompt, out, text: p + model.detokenize(out)});
            await seq.dispose();
        }
        return res;
    });
}

// ------------------------------------------------------------ checks

// llama.cpp's continuation is ds-ft's greedy one, token for token, and its text.
function checkExact(what, runs, model, adapter) {
    const gaps = [];
    PROMPTS.forEach((p, k) => {
        const {prompt, out, text} = runs[k];
        const want = tokenize(model, p, true);
        if (!same(prompt, want)) return fail(`${what}: prompt ids ${JSON.stringify(prompt)} != ds-ft ${JSON.stringify(want)}`);
        const rows = dsftLogits(model, adapter, [...prompt, ...out]);
        const g = [];
        for (let i = 0; i < out.length; i++) {
            const {best, gap} = top2(rows[prompt.length - 1 + i]);
            g.push(gap);
            if (best !== out[i]) return fail(`${what} '${p}': step ${i}: llama.cpp ${out[i]}, ds-ft ${best} (gap ${gap.toFixed(4)})`);
        }
        gaps.push(g);
        const gen = ds("generate", "--model", model, ...(adapter ? ["--adapter", adapter] : []), "--prompt", p,
            "--max-new-tokens", String(N)).replace(/\n$/, "");
        if (gen !== text) return fail(`${what} '${p}': ds-ft generate ${JSON.stringify(gen)} != llama.cpp ${JSON.stringify(text)}`);
    });
    ok(`${what}: ${PROMPTS.length} greedy continuations equal ds-ft's, token for token`);
    return gaps;
}

// A quantized file holds the weights it should, in the layout llama.cpp reads:
// llama.cpp's tokens are ds-ft's argmax with the file's weights dequantized
// (make_tiny_family dequantize), at every step, fed llama.cpp's own prefix,
// where ds-ft's two best logits are further apart than `margin` (llama.cpp
// rounds the activations to 8 bits for its quantized products).
function checkDequantized(what, margin, runs, dqModel) {
    let checked = 0;
    PROMPTS.forEach((p, k) => {
        const {prompt, out} = runs[k];
        const rows = dsftLogits(dqModel, null, [...prompt, ...out]);
        for (let i = 0; i < out.length; i++) {
            const {best, gap} = top2(rows[prompt.length - 1 + i]);
            if (gap < margin) continue;
            checked++;
            if (best !== out[i]) fail(`${what} '${p}': step ${i}: llama.cpp ${out[i]}, ds-ft on the dequantized weights ${best} (gap ${gap.toFixed(4)})`);
        }
    });
    if (checked < PROMPTS.length * N / 2) fail(`${what}: only ${checked} steps further apart than ${margin}`);
    else ok(`${what}: llama.cpp computes with the dequantized weights (${checked} steps checked)`);
}

// Quantization keeps the first token of every continuation.
function checkFirst(what, runs, exact) {
    const differ = PROMPTS.filter((_, k) => runs[k].out[0] !== exact[k].out[0]).length;
    if (differ) fail(`${what}: the first token differs from f16's for ${differ} prompt(s)`);
    else ok(`${what}: the first token equals f16's for every prompt`);
}

const M = (name) => `${work}/${name}`;
const G = (name) => `${work}/${name}.gguf`;

// 1. tokenization
await withModel(G("tiny-f16"), null, async (model) => {
    let n = 0;
    for (const t of TEXTS) {
        const got = model.tokenize(t, true), want = tokenize("models/tiny", t, false);
        if (!same(got, want)) fail(`tokenize ${JSON.stringify(t)}: llama.cpp ${JSON.stringify(got)}, ds-ft ${JSON.stringify(want)}`);
        // --special adds BOS as the GGUF says llama.cpp should (ds-ft never adds a second one)
        const bos = model.tokens.shouldPrependBosToken && got[0] !== model.tokens.bos ? [model.tokens.bos] : [];
        if (!same([...bos, ...got], tokenize("models/tiny", t, true)))
            fail(`tokenize --special ${JSON.stringify(t)}: BOS differs`);
        n++;
    }
    ok(`llama.cpp tokenizes ${n} texts as ds-ft does (with and without BOS)`);
});

// 2. models/tiny (rows of 128: q4_K falls back to q5_0, q6_K to q8_0) and a llama
// with rows of 256 (q4_K and q6_K themselves): f16 exact; the other types hold
// their dequantized weights and keep the first tokens.
// (The random 256-wide model is too sensitive to 4-bit weights for its first
// tokens to survive them - ds-ft on the dequantized weights changes them too,
// and llama.cpp follows ds-ft there - so only 8 and 16 bits keep f16's there.)
for (const [name, dir] of [["tiny", "models/tiny"], ["llama", M("llama")]]) {
    const exact = await greedy(G(`${name}-f16`));
    checkExact(`${name} f16`, exact, dir);
    for (const t of ["bf16", "q8_0", "q4_0", "q4_k_m"]) {
        const runs = await greedy(G(`${name}-${t}`));
        checkDequantized(`${name} ${t}`, MARGIN[t], runs, M(`${name}-${t}-dq`));
        if (name === "tiny" || t === "bf16" || t === "q8_0") checkFirst(`${name} ${t}`, runs, exact);
    }
}
const tiny = await greedy(G("tiny-f16")), big = await greedy(G("llama-f16"));

// 4. a bitsandbytes 4-bit checkpoint, dequantized
checkExact("tiny bnb-4bit f16", await greedy(G("tiny4-f16")), M("tiny4"));

// 5. the adapter: at run time, merged, and in ds-ft
const adapter = M("adapter");
const lora = await greedy(G("tiny-f16"), G("lora"));
checkExact("tiny f16 + LoRA GGUF", lora, "models/tiny", adapter);
const merged = await greedy(G("merged-f16"));
if (!PROMPTS.every((_, k) => same(merged[k].out, lora[k].out))) fail("the merged GGUF and the LoRA GGUF disagree");
else ok("the merged GGUF continues as the base with the LoRA GGUF does");
if (PROMPTS.every((_, k) => same(lora[k].out, tiny[k].out))) fail("the LoRA GGUF changes no continuation");
else ok("the LoRA GGUF changes the continuations");

// 6. qwen2 / qwen3
checkExact("qwen2 with zero biases as the llama model in ds-ft", await greedy(G("qwen2z-f16")), M("llama"));
const qwen2 = await greedy(G("qwen2-f16")), qwen3 = await greedy(G("qwen3-f16"));
if (PROMPTS.every((_, k) => same(qwen2[k].out, big[k].out))) fail("qwen2's biases change nothing");
else ok("qwen2's biases are applied");
if (PROMPTS.every((_, k) => same(qwen3[k].out, big[k].out))) fail("qwen3's q/k norms change nothing");
else ok("qwen3's q/k norms are applied");
for (const [fam, exact] of [["qwen2", qwen2], ["qwen3", qwen3]]) {
    checkFirst(`${fam} q8_0`, await greedy(G(`${fam}-q8_0`)), exact);
    const q4 = await greedy(G(`${fam}-q4_k_m`));   // loads and runs; its weights are checked through llama's above
    const n = q4.reduce((a, r) => a + r.out.length, 0);
    if (n > 0) ok(`${fam} q4_k_m: loads and generates (${n} tokens)`);
    else fail(`${fam} q4_k_m: generated nothing`);
}

// 7. DeepSeek-V2 as deepseek2
for (const f of ["tiny-deepseek-v2", "tiny-deepseek-v3"])
    checkExact(`${f} f16 (deepseek2)`, await greedy(G(`${f}-f16`)), `tests/data/fixtures/${f}`);
const moe = await greedy(G("moe-f16"));
checkExact("tiny-moe f16 (deepseek2)", moe, "models/tiny-moe");
checkFirst("tiny-moe q8_0", await greedy(G("moe-q8_0")), moe);
const moeQ4 = await greedy(G("moe-q4_k_m"));
const nq4 = moeQ4.reduce((a, r) => a + r.out.length, 0);
if (nq4 > 0) ok(`tiny-moe q4_k_m: loads and generates (${nq4} tokens)`);
else fail("tiny-moe q4_k_m: generated nothing");
const moeMerged = await greedy(G("moe-merged-f16"));
checkExact("tiny-moe f16 with the adapter merged", moeMerged, "models/tiny-moe", M("moe-run/adapter"));
if (PROMPTS.every((_, k) => same(moeMerged[k].out, moe[k].out))) fail("the merged tiny-moe adapter changes nothing");
else ok("the merged tiny-moe adapter changes the continuations");

console.log(fails ? `gguf_llama (llama.cpp): ${fails} check(s) failed` : "gguf_llama (llama.cpp): all checks passed");
process.exit(fails ? 1 : 0);
