#!/usr/bin/env python3
"""Reference fixtures for the C++ tokenizer tests (tests/models/test_tokenizer.cpp).

Trains small byte-level BPE tokenizers with Hugging Face `tokenizers` using the Llama 3 and the
Qwen 3 pre-tokenizer configurations (plus a GPT-2 style one that exercises the other supported
options), then writes, for a few hundred hard strings, the ids and decodings Hugging Face gives.
Chat prompts are rendered with transformers' `apply_chat_template` from the Jinja files in
tools/chat_templates/ (Llama 3.1 / 3.2 with a fixed `date_string` and with the template's default
date; the Llama 3.2 default is today's date, recorded as "today" in chat.json).

Usage: make_fixtures.py OUT_DIR
Writes OUT_DIR/<name>/{tokenizer.json, tokenizer_config.json, cases.json[, chat.json]}.
Deterministic; takes a few seconds.
"""
import datetime
import json
import os
import random
import shutil
import sys
import unicodedata
from pathlib import Path

from tokenizers import (AddedToken, Regex, Tokenizer, decoders, models, normalizers,
                        pre_tokenizers, processors, trainers)

REPO = Path(__file__).resolve().parents[2]
TEMPLATES = REPO / "tools" / "chat_templates"

LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
                  r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"
                 r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")

LLAMA3_SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>",
                   "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
QWEN3_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

WORDS = ("the of and to in is was for on that with as by at from his her it an were are which this be "
         "or has had not but have they you we she he one all their there been if more when will would "
         "who so no time people year way day man thing woman life child world school state family "
         "student group country problem hand part place case week company system program question "
         "work government number night point home water room mother area money story fact month lot "
         "right study book eye job word business issue side kind head house service friend father "
         "power hour game line end member law car city community name president team minute idea "
         "kid body information back parent face others level office door health person art war "
         "history party result change morning reason research girl guy moment air teacher force "
         "education don't can't won't it's I'm you're we've they'll she'd HE'S We'Ve DON'T").split()
EXTRA = ["3.14159", "1,024", "2024-05-01", "12:30", "$100", "100%", "e-mail", "C++", "x86_64",
         "你好", "世界", "日本語", "東京", "한국어", "Привет", "мир", "Ελληνικά", "café", "naïve",
         "😀", "👍🏽", "🚀", "#include", "std::vector<int>", "def", "return", "->", "==", "!="]


def corpus(n_lines=3000, seed=0):
    rng = random.Random(seed)
    lines = []
    for _ in range(n_lines):
        n = rng.randint(4, 20)
        ws = [rng.choice(WORDS) if rng.random() < 0.85 else rng.choice(EXTRA) for _ in range(n)]
        if rng.random() < 0.2:
            ws.append(str(rng.randint(0, 10**rng.randint(1, 9))))
        line = " ".join(ws)
        line = line[0].upper() + line[1:] + rng.choice([".", "!", "?", ",", ";", ":", ""])
        if rng.random() < 0.1:
            line = "    " + line
        if rng.random() < 0.05:
            line = "\t" + line + "\n"
        lines.append(line)
    return lines


def hard_strings():
    s = [
        "", " ", "  ", "   ", "\t", "\n", "\r", "\r\n", "\n\n", "\n\n\n", " \n", "\n ", " \n \n ",
        "\t\t\t", " \t \t", "a\tb", "a\t\tb", "a\n\nb", "a\r\n\r\nb", "x" + " " * 17 + "y",
        "   leading spaces", "trailing spaces   ", "both   ", "  \n  \n", "line1\nline2\n",
        "Hello world", "hello   world", "Hello, World!", "HELLO WORLD", "hElLo WoRlD",
        # contractions in every case, straight and curly apostrophes
        "don't", "DON'T", "Don'T", "We'Ve", "we've", "WE'VE", "I'm", "I'M", "i'm", "they'll",
        "THEY'LL", "They'Ll", "she'd", "SHE'D", "it's", "IT'S", "It'S", "you're", "YOU'RE",
        "You'rE", "can't", "CAN'T", "'s", "'S", "'t", "'T", "'re", "'RE", "'rE", "'ve", "'VE",
        "'m", "'M", "'ll", "'LL", "'lL", "'d", "'D", "'", "''", "'''", "' s", "don’t", "DON’T",
        "rock'n'roll", "'twas", "o'clock", "O'Neil's", "the dogs' bones", "'ſ", "it'ſ", "'K",
        # digits
        "0", "1", "12", "123", "1234", "12345", "123456", "1234567", "12345678901234567890",
        "3.14159265358979", "1,000,000", "2024-01-01", "v1.2.3", "0x1F600", "1e-10", "-42",
        "+1 (555) 010-9999", "٣٤٥٦", "१२३४", "①②③", "ⅫⅣ", "½¾", "１２３４５", "a1b2c3",
        "abc123def456", "99 bottles", "10%", "$1.50", "€20", "3rd", "21st",
        # CJK and other scripts
        "你好，世界", "你好世界！今天天气很好。", "日本語のテキスト", "カタカナ", "ひらがな",
        "한국어 텍스트", "한국어텍스트입니다", "abc中文def", "中文English混合", "漢字123",
        "Ελληνικά γράμματα", "русский текст", "Привет, мир!", "עברית", "العربية", "हिन्दी",
        "ไทย", "ქართული", "Հայերեն", "Tiếng Việt", "Ελληνικά и русский text",
        "עברית abc العربية", "mixed: 中文, русский, ελληνικά, English, 日本語",
        # emoji
        "👍", "👍🏽", "👋🏽 hi", "👨‍👩‍👧‍👦", "👨‍💻", "🏳️‍🌈", "🇯🇵", "🇺🇸🇬🇧", "❤️", "I ❤️ NY",
        "😀😃😄😁", "emoji😀inside", "🚀 launch", "🤷‍♀️", "✌🏿", "©®™", "⌘", "☃",
        # combining marks (NFC changes these)
        "e\u0301", "cafe\u0301", "re\u0301sume\u0301", "n\u0303", "A\u030a", "\u212b", "\u2126",
        "\u1e9b\u0323", "\u1112\u1161\u11ab", "o\u0308\u0304", "a\u0301\u0302\u0303",
        "\u0301", "x\u0301\u0301", "Zu\u0308rich", "\u00c5ngstro\u0308m", "\u0915\u094d\u0937",
        "ﬁ ligature", "\u2160", "\u00bd",
        # unicode whitespace
        "a\u00a0b", "\u00a0", "a\u3000b", "\u3000", "a\u2028b", "nel\u0085x", "\u0085", "a\u0085\u0085b", "x\u0085 \u0085\n", "a\x0bb",
        "a\x0cb", "a\u200bb", "a\u2009b", "\u202f", "\ufeffbom",
        # code / punctuation
        "def f(x):\n    return x**2\n", "if (a && b) { c++; }", "int main() {\n\treturn 0;\n}",
        "https://example.com/path?q=1&r=2", "foo_bar_baz", "CamelCaseWord", "snake_case_123",
        "<html><body>hi</body></html>", "a->b", "x == y", "!!!", "...", "?!", "—", "–",
        "«quoted»", "\"quoted\"", "'single'", "(parens)", "[brackets]", "{braces}", "@#$%^&*",
        "..\n..\n", "!!\n\n", " ?\r\n", "...   \n", "--\n--", "~/path/to/file.txt",
        "e.g. i.e. etc.", "Mr. O'Brien's", "<", "<|", "|>", "<<>>",
        # special tokens inside text
        "<|begin_of_text|>", "<|begin_of_text|>hi", "hi<|begin_of_text|>",
        "a<|eot_id|>b", "<|eot_id|><|eot_id|>", "<|eot_id", "< |eot_id|>", "<|eot_id|>>",
        "<|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|>", " <|eot_id|> ",
        "<|im_start|>user\nhi<|im_end|>\n", "<|im_start|><|im_end|>", "<|endoftext|>",
        "text<|endoftext|>more", "<think>\nreasoning\n</think>\n\nanswer", "<think></think>",
        "a<think>b", "x</think>", "<|reserved_special_token_0|>", "<|im_end|>\n<|im_start|>",
        "[MASK]", "a [MASK] b", "a  [MASK]  b", "[MASK][MASK]", "cat", "a cat", "concat", "cats",
        "the cat sat", "cat!", "hello world", "say hello world", "Hello World",
    ]
    rng = random.Random(1234)
    pieces = [p for p in s if p] + WORDS[:60] + EXTRA
    seps = ["", " ", "  ", "\n", "\t", " \n", "\n\n", "'", "’", "\u00a0"]
    combos = []
    while len(combos) < 250:
        k = rng.randint(2, 5)
        parts = [rng.choice(pieces) for _ in range(k)]
        t = parts[0]
        for p in parts[1:]:
            t += rng.choice(seps) + p
        combos.append(t)
    # A long paragraph and a long run of digits / spaces.
    combos.append(" ".join(corpus(20, seed=7)))
    combos.append("9" * 100)
    combos.append(" " * 64 + "x")
    combos.append("\n" * 40)
    # Long runs (a single very long pre-token, long whitespace runs).
    combos += [" " * 5000, "a" * 5000, "9" * 5000, "a " * 2500, "\n" * 5000, " \n" * 2500, "\u00e9" * 3000,
               "e\u0301" * 2000, "!" * 5000, "\U0001F44D\U0001F3FD" * 1000]
    return s + combos


def train(pattern, specials, normalizer, use_split=True, vocab_size=1500, ignore_merges=False):
    tok = Tokenizer(models.BPE(ignore_merges=ignore_merges))
    if normalizer is not None:
        tok.normalizer = normalizer
    if use_split:
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(pattern), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False),
        ])
    else:
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(corpus(), trainer)
    return tok


def write_cases(tok, out, name, nfc):
    cases = []
    for text in hard_strings():
        ids = tok.encode(text, add_special_tokens=True).ids
        ids_plain = tok.encode(text, add_special_tokens=False).ids
        cases.append({
            "text": text,
            "ids": ids,
            "ids_no_special": ids_plain,
            "decoded": tok.decode(ids, skip_special_tokens=False),
            "decoded_skip": tok.decode(ids, skip_special_tokens=True),
            "roundtrip": tok.decode(ids_plain, skip_special_tokens=False),
            "expected_roundtrip": unicodedata.normalize("NFC", text) if nfc else text,
        })
    (out / "cases.json").write_text(json.dumps({"name": name, "cases": cases}, ensure_ascii=False,
                                               indent=0))
    return len(cases)


def conversations():
    sys_msg = {"role": "system", "content": "  You are a helpful assistant.\n"}
    u1 = {"role": "user", "content": "Hello! What's 2+2?"}
    a1 = {"role": "assistant", "content": "It's 4."}
    a1_think = {"role": "assistant", "content": "<think>\nSimple sum.\n</think>\n\nIt's 4."}
    a1_rc = {"role": "assistant", "content": "It's 4.", "reasoning_content": "\nadd them\n\n"}
    u2 = {"role": "user", "content": "  And 3+3? \n"}
    a2_think = {"role": "assistant", "content": "<think>\n\nsix\n</think>\n\n\n6"}
    cjk = {"role": "user", "content": "你好 👋🏽 <|eot_id|> e\u0301"}
    convs = [
        [u1], [sys_msg, u1], [sys_msg, u1, a1], [sys_msg, u1, a1, u2], [u1, a1_think, u2],
        [u1, a1_think], [u1, a1_rc], [u1, a1_rc, u2, a2_think], [u1, a1, u2, a2_think],
        [sys_msg, u1, a1_think, u2, a2_think], [cjk], [sys_msg, cjk, a1],
        [{"role": "user", "content": ""}], [sys_msg, {"role": "system", "content": "second"}, u1],
        [u1, {"role": "assistant", "content": "no close <think> tag"}],
        [u1, {"role": "assistant", "content": "</think>only close"}],
    ]
    return convs


def write_chat(out, template_file, bos, eos, specials_cfg, date_strings=(None,), extra_convs=()):
    """Renders conversations with transformers' apply_chat_template. With template_file None,
    out/tokenizer_config.json already exists (a bundled model's). Each date in date_strings is
    passed as the template's `date_string` (None: not passed, the template's default)."""
    import transformers
    from transformers import AutoTokenizer
    if template_file is not None:
        cfg = {
            "tokenizer_class": "PreTrainedTokenizerFast",
            "bos_token": bos,
            "eos_token": eos,
            "chat_template": (TEMPLATES / template_file).read_text(),
            "clean_up_tokenization_spaces": False,
            "model_max_length": 131072,
        }
        cfg.update(specials_cfg)
        (out / "tokenizer_config.json").write_text(json.dumps(cfg, ensure_ascii=False, indent=2))
    tok = AutoTokenizer.from_pretrained(str(out))
    chats = []
    # transformers' strftime_now is datetime.now().strftime(fmt); record the day the default-date
    # renders saw (both ends, in case the day changes while rendering).
    today = datetime.datetime.now().strftime("%d %b %Y")
    for conv in conversations() + list(extra_convs):
        for gen in (True, False):
            for thinking in (None, True, False):
                for date in date_strings:
                    kw = {} if thinking is None else {"enable_thinking": thinking}
                    if date is not None:
                        kw["date_string"] = date
                    text = tok.apply_chat_template(conv, tokenize=False, add_generation_prompt=gen, **kw)
                    chats.append({"messages": conv, "add_generation_prompt": gen,
                                  "enable_thinking": thinking, "date_string": date, "text": text})
    today_end = datetime.datetime.now().strftime("%d %b %Y")
    (out / "chat.json").write_text(json.dumps({"transformers": transformers.__version__,
                                               "today": today if today == today_end else None,
                                               "chats": chats}, ensure_ascii=False, indent=1))
    return len(chats)


def bos_template(tok, bos):
    bos_id = tok.token_to_id(bos)
    return processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(single=f"{bos} $A", pair=f"{bos} $A {bos} $B:1",
                                      special_tokens=[(bos, bos_id)]),
    ])


def main():
    out_root = Path(sys.argv[1])
    out_root.mkdir(parents=True, exist_ok=True)
    summary = {}

    # Llama 3: Split(pattern) + ByteLevel, ignore_merges, no normalizer, BOS post-processor.
    tok = train(LLAMA3_PATTERN, LLAMA3_SPECIALS, None, ignore_merges=True)
    tok.post_processor = bos_template(tok, "<|begin_of_text|>")
    out = out_root / "llama3"
    out.mkdir(exist_ok=True)
    tok.save(str(out / "tokenizer.json"))
    summary["llama3"] = write_cases(tok, out, "llama3", nfc=False)
    summary["llama3_chat"] = write_chat(out, "llama3.jinja", "<|begin_of_text|>", "<|eot_id|>", {})

    # Llama 3.1 / 3.2 chat formats over the Llama 3 tokenizer: always a system turn with the
    # knowledge-cutoff and date lines. A fixed date_string, and the default (3.1: "26 Jul 2024";
    # 3.2: today, from transformers' strftime_now).
    llama31_extra = [[{"role": "system", "content": " only a system message "}],
                     [{"role": "assistant", "content": " first \n"}, {"role": "user", "content": "next"}],
                     [{"role": "user", "content": "a"}, {"role": "system", "content": "  late system  "},
                      {"role": "user", "content": "b"}]]
    for name in ("llama31", "llama32"):
        out = out_root / name
        out.mkdir(exist_ok=True)
        shutil.copyfile(out_root / "llama3" / "tokenizer.json", out / "tokenizer.json")
        summary[name + "_chat"] = write_chat(out, name + ".jinja", "<|begin_of_text|>", "<|eot_id|>", {},
                                             date_strings=("02 Jan 2025", None), extra_convs=llama31_extra)

    # Qwen 3: NFC, Split(pattern) + ByteLevel, no BOS; <think> tags are added, non-special tokens.
    tok = train(QWEN3_PATTERN, QWEN3_SPECIALS, normalizers.NFC())
    tok.add_tokens([AddedToken("<think>", special=False, normalized=False),
                    AddedToken("</think>", special=False, normalized=False)])
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    out = out_root / "qwen3"
    out.mkdir(exist_ok=True)
    tok.save(str(out / "tokenizer.json"))
    # Qwen's published tokenizer.json writes merges as "a b" strings: use that form here.
    j = json.loads((out / "tokenizer.json").read_text())
    j["model"]["merges"] = [" ".join(m) if isinstance(m, list) else m for m in j["model"]["merges"]]
    (out / "tokenizer.json").write_text(json.dumps(j, ensure_ascii=False, indent=2))
    tok = Tokenizer.from_file(str(out / "tokenizer.json"))
    summary["qwen3"] = write_cases(tok, out, "qwen3", nfc=True)
    summary["qwen3_chat"] = write_chat(out, "qwen3.jinja", None, "<|im_end|>",
                                       {"pad_token": "<|endoftext|>"})

    # GPT-2 style: bare ByteLevel(use_regex=true), Sequence[NFC], and added tokens with
    # lstrip / rstrip / single_word / normalized flags, plus BOS via TemplateProcessing.
    tok = train(None, ["<|endoftext|>"], normalizers.Sequence([normalizers.NFC()]), use_split=False,
                vocab_size=1000)
    tok.add_special_tokens([AddedToken("[MASK]", lstrip=True, rstrip=True, special=True)])
    tok.add_tokens([AddedToken("cat", single_word=True, special=False),
                    AddedToken("hello world", normalized=True, special=False),
                    AddedToken("\u00c5ngstr", normalized=True, special=False)])
    tok.post_processor = bos_template(tok, "<|endoftext|>")
    out = out_root / "gpt2"
    out.mkdir(exist_ok=True)
    tok.save(str(out / "tokenizer.json"))
    summary["gpt2"] = write_cases(tok, out, "gpt2", nfc=True)

    # Variants made by editing tokenizer.json (no retraining): the other Split behaviours, invert,
    # a literal pattern, add_prefix_space, ignore_merges off. Compared with HF like the others.
    base_llama = json.loads((out_root / "llama3" / "tokenizer.json").read_text())
    base_gpt2 = json.loads((out_root / "gpt2" / "tokenizer.json").read_text())
    variants = {}
    # A pattern that leaves gaps, so that merging and inverting matter.
    gappy = {"Regex": r"\s+|\p{N}|'"}
    for behavior in ("Removed", "MergedWithPrevious", "MergedWithNext"):
        j = json.loads(json.dumps(base_llama))
        j["pre_tokenizer"]["pretokenizers"][0]["behavior"] = behavior
        if behavior != "Removed":
            j["pre_tokenizer"]["pretokenizers"][0]["pattern"] = gappy
        variants["v_split_" + behavior.lower()] = j
    j = json.loads(json.dumps(base_llama))
    j["pre_tokenizer"]["pretokenizers"][0]["pattern"] = gappy
    j["pre_tokenizer"]["pretokenizers"][0]["behavior"] = "Removed"
    j["pre_tokenizer"]["pretokenizers"][0]["invert"] = True
    variants["v_split_invert"] = j
    j = json.loads(json.dumps(base_llama))
    j["pre_tokenizer"]["pretokenizers"][0]["pattern"] = {"String": " "}
    j["pre_tokenizer"]["pretokenizers"][0]["behavior"] = "MergedWithNext"
    variants["v_split_string"] = j
    j = json.loads(json.dumps(base_llama))
    j["model"]["ignore_merges"] = False
    variants["v_no_ignore_merges"] = j
    j = json.loads(json.dumps(base_gpt2))
    j["pre_tokenizer"]["add_prefix_space"] = True
    variants["v_prefix_space"] = j
    for name, j in variants.items():
        out = out_root / name
        out.mkdir(exist_ok=True)
        (out / "tokenizer.json").write_text(json.dumps(j, ensure_ascii=False))
        tok = Tokenizer.from_file(str(out / "tokenizer.json"))
        summary[name] = write_cases(tok, out, name, nfc=name == "v_prefix_space")

    # The bundled models' tokenizers (models/tiny-*), when present: same strings, and chat prompts
    # from the chat_template embedded in their tokenizer_config.json.
    for model_dir in sorted((REPO / "models").glob("tiny-*")):
        if not (model_dir / "tokenizer.json").exists():
            continue
        out = out_root / model_dir.name
        out.mkdir(exist_ok=True)
        for f in ("tokenizer.json", "tokenizer_config.json"):
            if (model_dir / f).exists():
                shutil.copyfile(model_dir / f, out / f)
        tok = Tokenizer.from_file(str(out / "tokenizer.json"))
        nfc = "NFC" in json.dumps(json.loads((out / "tokenizer.json").read_text()).get("normalizer"))
        summary[model_dir.name] = write_cases(tok, out, model_dir.name, nfc=nfc)
        cfg = json.loads((out / "tokenizer_config.json").read_text()) if (out / "tokenizer_config.json").exists() else {}
        if cfg.get("chat_template"):
            summary[model_dir.name + "_chat"] = write_chat(out, None, None, None, None)

    (out_root / "summary.json").write_text(json.dumps(summary))
    print("tokenizer fixtures:", summary, "->", out_root)


if __name__ == "__main__":
    main()
