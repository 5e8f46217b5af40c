#!/usr/bin/env python3
"""RULER-style long-context retrieval tasks: one generator for training and evaluation.

Tasks (after RULER, Hsieh et al. 2024, written anew for this project):
  passkey    one pass key (5 digits) hidden in prose; "What is the pass key? The pass key is" -> " 48213"
  multikey   needle-in-a-haystack with distractors: several "special magic number for <key>" needles,
             the question asks for one key; -> " 7021934"
  kv         key-value retrieval: several "key <8 hex> maps to the value <8 hex>" needles; -> " 9b0e44aa"
  vt         variable tracking: a chain "VAR A = 51234", "VAR B = VAR A", ... plus a distractor chain;
             the question asks for all variables that hold the value -> " A B C D" (chain order)

Each example is a dict:
  task, context_len_tokens (the nominal length: prompt + answer fit in it for every tokenizer given),
  prompt_tokens ({tokenizer name: token count of the prompt, special tokens included}),
  depth (0..1: where the answer-bearing needle starts, as a share of the haystack),
  prompt (full text, ending right before the answer), answer (the continuation, with its leading space).

The haystack is contiguous corpus text from a TextSource: the train split for training, the held-out
split for evaluation. Seeds: evaluation uses seeds >= EVAL_SEED_BASE, training seeds below it, so the
two never share a random stream. Lengths are measured with the tokenizers passed in.

CLI (writes the evaluation set):
  python3 tools/tasks/ruler.py export --heldout data/corpus/heldout.jsonl \
      --tokenizer llama3=models/tiny-llama3/tokenizer.json --tokenizer qwen3=models/tiny-qwen3/tokenizer.json \
      --out evaldata
  python3 tools/tasks/ruler.py sample --task passkey --length 1024 --tokenizer llama3=...   # print one
"""
from __future__ import annotations

import argparse
import bisect
import json
import random
import re
import sys
from pathlib import Path

TASKS = ("passkey", "multikey", "kv", "vt")
EVAL_SEED_BASE = 1_000_000_000
# Tokens kept free after the prompt for the answer and its end token.
ANSWER_ROOM = 32

WORDS = (
    "apple amber anchor arrow autumn badge bamboo banner basket beacon berry blossom border bottle "
    "branch breeze bridge bronze bubble button cabin candle canyon carpet castle cedar cellar chalk "
    "cherry circle cliff clover comet copper coral cotton crane crystal curtain dagger desert diamond "
    "dolphin dragon eagle ember engine falcon feather fern fiddle flame forest fossil fountain garden "
    "garnet glacier globe granite harbor harvest hazel helmet hermit honey horizon island ivory jacket "
    "jasmine jewel jungle kettle kitten ladder lagoon lantern lemon lily linen lizard magnet maple marble "
    "meadow mirror monkey mosaic needle nickel oasis ocean olive orchid otter oyster paddle palace panther "
    "parrot pebble pepper pillow pilot planet pocket pony puzzle quarry quartz rabbit radar raven reef "
    "ribbon river rocket saddle salmon satin scarlet shadow shell silver sparrow spider spruce squirrel "
    "statue stone summit sunset swan tablet temple thimble thunder tiger timber topaz tower tulip tunnel "
    "turtle valley velvet violet walnut wagon willow window winter wizard zebra"
).split()
ADJECTIVES = (
    "ancient bold brave bright calm clever crimson curious daring eager elegant fierce gentle golden "
    "grumpy happy hidden humble icy jolly keen lively lucky merry mighty misty noble proud quiet rapid "
    "rustic shiny silent sleepy smooth steady swift tender tiny vivid wandering wild wise witty young"
).split()


# ----------------------------------------------------------------------------- text source
class TextSource:
    """Documents joined into one string; haystacks are contiguous slices starting at a line start."""

    def __init__(self, texts: list[str]):
        self.text = "\n\n".join(t.strip() for t in texts if t.strip())
        self.line_starts = [0] + [m.end() for m in re.finditer("\n", self.text)]

    @classmethod
    def from_jsonl(cls, path: str | Path) -> "TextSource":
        with open(path, encoding="utf-8") as f:
            return cls([json.loads(line)["text"] for line in f])

    @classmethod
    def from_text(cls, text: str) -> "TextSource":
        return cls([text])

    def start(self, rng: random.Random, n_chars: int) -> int:
        """A random line start with at least n_chars of text after it (when the text is long enough)."""
        n_chars = min(n_chars, len(self.text) - 1)
        hi = bisect.bisect_right(self.line_starts, len(self.text) - n_chars) - 1
        return self.line_starts[rng.randrange(0, max(1, hi + 1))]


# ----------------------------------------------------------------------------- tokenizers
class Counter:
    """Counts tokens with one or more `tokenizers.Tokenizer`s (special tokens included)."""

    def __init__(self, tokenizers: dict):
        self.toks = dict(tokenizers)

    def counts(self, text: str) -> dict:
        return {name: len(t.encode(text).ids) for name, t in self.toks.items()}

    def count(self, text: str) -> int:
        return max(self.counts(text).values())


def load_tokenizers(specs: list[str]) -> dict:
    from tokenizers import Tokenizer
    out = {}
    for s in specs:
        name, path = s.split("=", 1)
        out[name] = Tokenizer.from_file(path)
    return out


# ----------------------------------------------------------------------------- needles
def _num(rng: random.Random, digits: int) -> str:
    return str(rng.randrange(10 ** (digits - 1), 10 ** digits))


def _key(rng: random.Random, used: set) -> str:
    while True:
        k = f"{rng.choice(ADJECTIVES)}-{rng.choice(WORDS)}"
        if k not in used:
            used.add(k)
            return k


def _hex(rng: random.Random, n: int = 8) -> str:
    return "".join(rng.choice("0123456789abcdef") for _ in range(n))


def _var(rng: random.Random, used: set) -> str:
    while True:
        v = "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(5))
        if v not in used:
            used.add(v)
            return v


def make_needles(task: str, rng: random.Random, train: bool):
    """Returns (intro, needles [(text, is_target)], question, answer, target_index).

    needles are listed in the order they will appear in the haystack except for the target,
    whose position is chosen by `depth` (target_index says which entry it is)."""
    if task == "passkey":
        key = _num(rng, 5)
        intro = ("There is an important piece of information hidden inside a lot of irrelevant text. "
                 "Find it and memorize it. I will quiz you about it.")
        needle = f"The pass key is {key}. Remember it. {key} is the pass key."
        return intro, [(needle, True)], "What is the pass key? The pass key is", f" {key}", 0
    if task == "multikey":
        n = rng.randint(2, 6) if train else 4
        used: set = set()
        keys = [_key(rng, used) for _ in range(n)]
        vals = [_num(rng, 7) for _ in range(n)]
        intro = ("Some special magic numbers are hidden inside the following text. "
                 "Make sure to memorize them. I will quiz you about one of them.")
        needles = [(f"One of the special magic numbers for {k} is: {v}.", i == 0) for i, (k, v) in enumerate(zip(keys, vals))]
        q = (f"What is the special magic number for {keys[0]} mentioned in the provided text? "
             f"The special magic number for {keys[0]} mentioned in the provided text is")
        return intro, needles, q, f" {vals[0]}", 0
    if task == "kv":
        n = rng.randint(2, 10) if train else 6
        keys, vals = [], []
        seen = set()
        while len(keys) < n:
            k = _hex(rng)
            if k not in seen:
                seen.add(k)
                keys.append(k)
                vals.append(_hex(rng))
        intro = ("A registry of keys and values is scattered through the following text. "
                 "Memorize every key and its value. I will ask you for the value of one key.")
        needles = [(f"In the registry, the key {k} maps to the value {v}.", i == 0) for i, (k, v) in enumerate(zip(keys, vals))]
        q = f"What value does the key {keys[0]} map to? In the registry, the key {keys[0]} maps to the value"
        return intro, needles, q, f" {vals[0]}", 0
    if task == "vt":
        hops = rng.randint(2, 4) if train else 4
        used = set()
        chain = [_var(rng, used) for _ in range(hops)]
        other = [_var(rng, used) for _ in range(hops)]
        value, other_value = _num(rng, 5), _num(rng, 5)
        while other_value == value:
            other_value = _num(rng, 5)
        intro = ("Memorize and track the chain(s) of variable assignment hidden in the following text.")

        def lines(c, v):
            return [f"VAR {c[0]} = {v}."] + [f"VAR {c[i]} = VAR {c[i - 1]}." for i in range(1, len(c))]

        a, b = lines(chain, value), lines(other, other_value)
        # interleave the two chains, keeping each chain's order; the target chain's first line is entry 0
        needles = [(a[0], True)]
        ia, ib = 1, 0
        while ia < len(a) or ib < len(b):
            if ib >= len(b) or (ia < len(a) and rng.random() < 0.5):
                needles.append((a[ia], False))
                ia += 1
            else:
                needles.append((b[ib], False))
                ib += 1
        q = (f"Find all variables that are assigned the value {value} in the text above. "
             f"Answer: the variables assigned the value {value} are")
        return intro, needles, q, " " + " ".join(chain), 0
    raise ValueError(f"unknown task {task!r}; known: {TASKS}")


def _cut_points(hay: str) -> list[int]:
    """Character offsets where a needle may go: after a sentence end or a line break."""
    pts = [0]
    for i in range(1, len(hay)):
        c = hay[i - 1]
        if c == "\n" or (c == " " and hay[i - 2:i - 1] in (".", "?", "!")):
            pts.append(i)
    pts.append(len(hay))
    return pts


def _assemble(intro: str, hay: str, needles, depth: float, question: str, rng: random.Random,
              ordered_positions: bool) -> tuple[str, float]:
    pts = _cut_points(hay)
    n = len(needles)
    tgt_pos = pts[min(len(pts) - 1, bisect.bisect_left(pts, int(depth * len(hay))))]
    if ordered_positions:
        # target first at depth, the others in order after it (spread over the rest)
        rest = sorted(rng.choice(pts[bisect.bisect_left(pts, tgt_pos):]) for _ in range(n - 1))
        positions = [tgt_pos] + rest
    else:
        positions = [tgt_pos] + [rng.choice(pts) for _ in range(n - 1)]
    # insert from the end so earlier offsets stay valid; equal offsets keep list order
    order = sorted(range(n), key=lambda i: (positions[i], i))
    pieces, last = [], 0
    for i in order:
        p = positions[i]
        pieces.append(hay[last:p])
        if p == 0 or hay[p - 1] == "\n":      # at a line start: the needle is a line of its own
            pieces.append(needles[i][0] + "\n")
        elif p == len(hay):                    # at the very end: a line of its own
            pieces.append("\n" + needles[i][0])
        else:                                  # after a sentence end ("... end. |Next")
            pieces.append(needles[i][0] + " ")
        last = p
    pieces.append(hay[last:])
    body = "".join(pieces).strip()
    prompt = f"{intro}\n\n{body}\n\n{question}"
    actual_depth = tgt_pos / max(1, len(hay))
    return prompt, actual_depth


def generate(task: str, context_len_tokens: int, seed: int, source: TextSource, counter: Counter,
             depth: float | None = None, train: bool = False) -> dict:
    """One example whose prompt + answer fit in `context_len_tokens` for every tokenizer of `counter`
    (the prompt is at most context_len_tokens - ANSWER_ROOM tokens and close to it)."""
    rng = random.Random(f"{task}/{context_len_tokens}/{seed}")
    if depth is None:
        depth = rng.random()
    intro, needles, question, answer, _ = make_needles(task, rng, train)
    budget = context_len_tokens - ANSWER_ROOM
    hay_rng = random.Random(rng.random())
    place_rng_seed = rng.random()
    tol = max(8, budget // 100)
    fixed = counter.count(f"{intro}\n\n" + "\n".join(n for n, _ in needles) + f"\n\n{question}")
    ratio = 3.6  # characters per token, refined from each measurement
    start = source.start(hay_rng, int(max(0, budget - fixed) * ratio * 1.5) + 200)
    n = int(max(0, budget - fixed) * ratio)
    lo, hi = 0, None
    best = None
    for _ in range(20):
        hay = source.text[start:start + n]
        if start + n < len(source.text):  # end on a word boundary
            cut = hay.rfind(" ")
            hay = hay[:cut] if cut > len(hay) * 0.9 else hay
        prompt, actual_depth = _assemble(intro, hay, needles, depth, question, random.Random(place_rng_seed),
                                         ordered_positions=(task == "vt"))
        counts = counter.counts(prompt)
        m = max(counts.values())
        if m <= budget:
            if best is None or m > best[3]:
                best = (prompt, actual_depth, counts, m)
            lo = n
            if m >= budget - tol or start + n >= len(source.text):
                break
        else:
            hi = n
        if hi is not None and hi - lo <= 8:
            break
        if m > fixed:
            ratio = len(hay) / (m - fixed)
        guess = int((budget - tol // 2 - fixed) * ratio)
        if guess <= lo or (hi is not None and guess >= hi):
            guess = (lo + hi) // 2 if hi is not None else max(lo + 1, 2 * n)
        n = guess
    if best is None:
        raise RuntimeError(f"{task}: could not fit a prompt into {context_len_tokens} tokens")
    prompt, actual_depth, counts, _ = best
    return {
        "task": task,
        "context_len_tokens": context_len_tokens,
        "prompt_tokens": counts,
        "depth": round(actual_depth, 4),
        "prompt": prompt,
        "answer": answer,
    }


def eval_depths(n: int) -> list[float]:
    return [i / (n - 1) if n > 1 else 0.5 for i in range(n)]


def eval_set(task: str, length: int, n: int, source: TextSource, counter: Counter) -> list[dict]:
    """The evaluation examples of one (task, length): depths evenly spaced over [0, 1], eval seeds."""
    out = []
    for i, d in enumerate(eval_depths(n)):
        seed = EVAL_SEED_BASE + length * 1000 + i
        ex = generate(task, length, seed, source, counter, depth=d, train=False)
        ex["id"] = f"{task}_{length}_{i:03d}"
        out.append(ex)
    return out


# ----------------------------------------------------------------------------- scoring
def score(task: str, answer: str, completion: str) -> bool:
    """Exact match on the answer's words at the start of the completion (whitespace-normalised)."""
    want = answer.split()
    got = completion.replace(",", " ").replace(".", " ").split()
    return got[:len(want)] == want


def score_contains(task: str, answer: str, completion: str) -> bool:
    """RULER's lenient metric (string_match_all): every word of the answer occurs in the completion."""
    return all(w in completion for w in answer.split())


# ----------------------------------------------------------------------------- CLI
EXPORT_COUNTS = {"passkey": 20, "multikey": 20, "kv": 10, "vt": 10}
EXPORT_LENGTHS = (1024, 2048, 4096, 8192)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    ex = sub.add_parser("export", help="write the evaluation JSONL files")
    ex.add_argument("--heldout", default="data/corpus/heldout.jsonl")
    ex.add_argument("--tokenizer", action="append", required=True, help="name=path/to/tokenizer.json")
    ex.add_argument("--out", default="evaldata")
    ex.add_argument("--lengths", default=",".join(map(str, EXPORT_LENGTHS)))
    sm = sub.add_parser("sample", help="print one example")
    sm.add_argument("--task", choices=TASKS, default="passkey")
    sm.add_argument("--length", type=int, default=1024)
    sm.add_argument("--seed", type=int, default=0)
    sm.add_argument("--depth", type=float)
    sm.add_argument("--text", default="data/corpus/heldout.jsonl")
    sm.add_argument("--tokenizer", action="append", required=True)
    args = ap.parse_args(argv)
    counter = Counter(load_tokenizers(args.tokenizer))
    if args.cmd == "sample":
        ex = generate(args.task, args.length, args.seed, TextSource.from_jsonl(args.text), counter, depth=args.depth)
        print(json.dumps({k: v for k, v in ex.items() if k != "prompt"}))
        print(ex["prompt"][:600], "\n...\n", ex["prompt"][-600:], "|", ex["answer"])
        return 0
    source = TextSource.from_jsonl(args.heldout)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for task in TASKS:
        for length in map(int, args.lengths.split(",")):
            rows = eval_set(task, length, EXPORT_COUNTS[task], source, counter)
            path = out / f"{task}_{length}.jsonl"
            with open(path, "w", encoding="utf-8") as f:
                for r in rows:
                    f.write(json.dumps(r, ensure_ascii=False) + "\n")
            lens = [max(r["prompt_tokens"].values()) for r in rows]
            print(f"{path}: {len(rows)} examples, prompt tokens {min(lens)}..{max(lens)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
