#!/usr/bin/env python3
"""Render conversations through real chat templates and write the expected
texts for tests/test_jinja.c.

    python3 scripts/make_template_cases.py [TEMPLATE_DIR] [--out FILE] [--jinja2 | --require-transformers]

TEMPLATE_DIR (default tests/data/chat_templates) holds NAME.jinja files and
special_tokens.json ({NAME: {"bos_token": ..., "eos_token": ...}}, the
model's tokenizer_config.json tokens). Each conversation below is rendered
with transformers' apply_chat_template(messages, tools=..., tokenize=False,
add_generation_prompt=...) on a tokenizer that carries the template and
those special tokens, and written to TEMPLATE_DIR/cases.jsonl as
{"template", "messages", "tools", "add_generation_prompt", "expected"} (or
"error": the message of the exception the template raised). The first line
says which tool wrote the file.

Without transformers (or with --jinja2), jinja2 is configured the way
transformers configures it (ImmutableSandboxedEnvironment, trim_blocks,
lstrip_blocks, loopcontrols, its tojson, raise_exception and strftime_now;
variables messages, tools, documents, add_generation_prompt and the special
tokens) and the first line says so. Run it with transformers on a machine
that has it: the file must come out the same.
"""
import argparse
import json
import os
import sys

SYSTEM = "You are a careful assistant."
THINK = "<think>\nThe user asks for 2+2. That is 4.\n</think>\n\nThe answer is 4."
TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Get the weather in a city",
    "parameters": {"type": "object", "properties": {
        "city": {"type": "string", "description": "The city, e.g. Oslo"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
        "required": ["city"]}}}]

CONVERSATIONS = [
    ("user", [{"role": "user", "content": "Hello!"}]),
    ("user_assistant", [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "4"}]),
    ("system_user_assistant", [{"role": "system", "content": SYSTEM},
                               {"role": "user", "content": "Name a prime number."},
                               {"role": "assistant", "content": "7 is prime."}]),
    ("system_user", [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Name a prime number."}]),
    ("multi_turn", [{"role": "system", "content": SYSTEM},
                    {"role": "user", "content": "Hi."},
                    {"role": "assistant", "content": "Hello! How can I help?"},
                    {"role": "user", "content": "Count to three."},
                    {"role": "assistant", "content": "1, 2, 3."}]),
    ("multi_turn_open", [{"role": "user", "content": "Hi."},
                         {"role": "assistant", "content": "Hello! How can I help?"},
                         {"role": "user", "content": "Count to three."}]),
    ("think", [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": THINK}]),
    ("think_multi_turn", [{"role": "user", "content": "What is 2+2?"},
                          {"role": "assistant", "content": THINK},
                          {"role": "user", "content": "And 3+3?"},
                          {"role": "assistant", "content": "<think>\n3+3 is 6.\n</think>\n\n6."}]),
    ("unicode", [{"role": "system", "content": "Réponds en français, s'il te plaît."},
                 {"role": "user", "content": "Ça va? ☃ 你好 🙂 \"quoted\" back\\slash"},
                 {"role": "assistant", "content": "Très bien — merci ✓"}]),
    ("empty_system", [{"role": "system", "content": ""},
                      {"role": "user", "content": "Say nothing."},
                      {"role": "assistant", "content": ""}]),
    ("whitespace", [{"role": "user", "content": "  padded question \n\n"},
                    {"role": "assistant", "content": "\n  padded answer  \n"}]),
    ("two_users", [{"role": "user", "content": "First."}, {"role": "user", "content": "Second."}]),
]

TOOL_TEMPLATES = {"qwen2_5", "qwen3", "llama3_1"}


def jinja2_renderer():
    """jinja2 set up exactly as transformers' _compile_jinja_template does."""
    from datetime import datetime

    import jinja2
    from jinja2.ext import Extension, loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class AssistantTracker(Extension):
        # transformers' {% generation %} block; renders its body unchanged
        tags = {"generation"}

        def parse(self, parser):
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
            return jinja2.nodes.CallBlock(self.call_method("_generation_support"), [], [], body).set_lineno(lineno)

        def _generation_support(self, caller):
            return caller()

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(format):
        return datetime.now().strftime(format)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[AssistantTracker, loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now

    def render(template, tokens, messages, tools, agp):
        return env.from_string(template).render(messages=messages, tools=tools, documents=None,
                                                add_generation_prompt=agp, **tokens)

    return render, "jinja2 %s configured as transformers' apply_chat_template (no transformers here)" % jinja2.__version__


def transformers_renderer():
    import transformers
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    cache = {}

    def render(template, tokens, messages, tools, agp):
        key = (template, tuple(sorted(tokens.items())))
        if key not in cache:
            vocab = {"<unk>": 0}
            tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel(vocab, unk_token="<unk>")),
                                          **tokens)
            tok.chat_template = template
            cache[key] = tok
        return cache[key].apply_chat_template(messages, tools=tools, tokenize=False, add_generation_prompt=agp)

    return render, "transformers %s apply_chat_template(tokenize=False)" % transformers.__version__


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dir", nargs="?", default=os.path.join(os.path.dirname(__file__), "..", "tests", "data",
                                                           "chat_templates"))
    ap.add_argument("--out", help="output file (default DIR/cases.jsonl)")
    ap.add_argument("--jinja2", action="store_true", help="use jinja2 even when transformers is installed")
    ap.add_argument("--require-transformers", action="store_true",
                    help="fail rather than fall back to jinja2 when transformers cannot be imported")
    args = ap.parse_args()
    render = writer = None
    if not args.jinja2:
        try:
            render, writer = transformers_renderer()
        except ImportError as e:
            if args.require_transformers:
                sys.exit("transformers is required: %s" % e)
    if render is None:
        render, writer = jinja2_renderer()
    with open(os.path.join(args.dir, "special_tokens.json"), encoding="utf-8") as f:
        special = json.load(f)
    names = sorted(n[:-len(".jinja")] for n in os.listdir(args.dir) if n.endswith(".jinja"))
    out_path = args.out or os.path.join(args.dir, "cases.jsonl")
    lines = [json.dumps({"written_by": writer}, ensure_ascii=False)]
    for name in names:
        with open(os.path.join(args.dir, name + ".jinja"), encoding="utf-8") as f:
            template = f.read()
        if name not in special:
            sys.exit("%s: no special tokens for %s in special_tokens.json" % (args.dir, name))
        tokens = special[name]
        convs = list(CONVERSATIONS)
        if name in TOOL_TEMPLATES:
            convs.append(("tools", [{"role": "user", "content": "Weather in Oslo?"}]))
        for label, messages in convs:
            tools = TOOLS if label == "tools" else None
            for agp in (False, True):
                case = {"template": name, "conversation": label, "messages": messages, "tools": tools,
                        "add_generation_prompt": agp}
                try:
                    case["expected"] = render(template, tokens, messages, tools, agp)
                except Exception as e:  # the template's raise_exception, or a jinja2 error
                    case["error"] = str(e)
                lines.append(json.dumps(case, ensure_ascii=False))
    with open(out_path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    print("%s: %d cases (%s)" % (out_path, len(lines) - 1, writer))


if __name__ == "__main__":
    main()
