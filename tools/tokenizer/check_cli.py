#!/usr/bin/env python3
"""End-to-end check of akcb-tokenize against the HF fixtures of make_fixtures.py.

Usage: check_cli.py PATH/TO/akcb-tokenize FIXTURES_DIR
Encodes (with and without special tokens), decodes and chat-renders through the CLI, compares
with the ids / texts Hugging Face produced, and checks that errors give a non-zero exit.
"""
import json
import subprocess
import sys
from pathlib import Path


def run(cli, args, stdin):
    p = subprocess.run([cli, *args], input=stdin.encode("utf-8"), capture_output=True)
    return p.returncode, p.stdout.decode("utf-8"), p.stderr.decode("utf-8")


def main():
    cli, root = sys.argv[1], Path(sys.argv[2])
    failures = 0

    def check(cond, what):
        nonlocal failures
        if not cond:
            failures += 1
            print("FAIL:", what)

    for name in ("llama3", "qwen3", "gpt2"):
        d = root / name
        cases = json.loads((d / "cases.json").read_text())["cases"]
        texts = [c["text"] for c in cases]
        rc, out, err = run(cli, [str(d)], json.dumps(texts))
        check(rc == 0 and json.loads(out) == [c["ids"] for c in cases], f"{name}: encode ({err.strip()})")
        rc, out, err = run(cli, [str(d), "--no-special"], json.dumps(texts))
        check(rc == 0 and json.loads(out) == [c["ids_no_special"] for c in cases], f"{name}: --no-special")
        rc, out, err = run(cli, [str(d), "--decode"], json.dumps([c["ids"] for c in cases]))
        check(rc == 0 and json.loads(out) == [c["decoded"] for c in cases], f"{name}: --decode")
        rc, out, err = run(cli, [str(d), "--decode", "--skip-special"], json.dumps([c["ids"] for c in cases]))
        check(rc == 0 and json.loads(out) == [c["decoded_skip"] for c in cases], f"{name}: --decode --skip-special")

    for name in ("llama3", "qwen3"):
        d = root / name
        for c in json.loads((d / "chat.json").read_text())["chats"]:
            args = [str(d), "--chat"]
            if not c["add_generation_prompt"]:
                args.append("--no-generation-prompt")
            if c["enable_thinking"] is True:
                args.append("--enable-thinking")
            if c["enable_thinking"] is False:
                args.append("--disable-thinking")
            rc, out, err = run(cli, args, json.dumps(c["messages"]))
            check(rc == 0 and json.loads(out) == c["text"], f"{name}: --chat {args[2:]} {c['messages']}")

    # Errors: stderr and a non-zero exit.
    for args, stdin in (([str(root / "nonexistent")], "[]"), ([str(root / "llama3")], "not json"),
                        ([str(root / "llama3")], "[1, 2]"), ([str(root / "llama3"), "--decode"], "[[99999999]]"),
                        ([str(root / "gpt2"), "--chat"], '[{"role": "user", "content": "x"}]')):
        rc, out, err = run(cli, args, stdin)
        check(rc != 0 and "error" in err and out == "", f"error case {args} {stdin!r}: rc={rc} err={err!r}")

    print("akcb-tokenize:", "OK" if failures == 0 else f"{failures} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
