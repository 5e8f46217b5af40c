#!/usr/bin/env python3
"""Build the AKCB English prose corpus from Debian packages.

Deterministic: the same packages give the same output bytes. Steps:
  1. install the source packages with apt-get (skipped when already installed);
  2. extract plain text (HTML and reStructuredText markup stripped, dictd databases
     decoded, fortune files split);
  3. split every source into documents with a stable id ("<source>/<name>");
  4. assign each document to train or held-out by a hash of its id
     (sha256(id) mod 1000 < heldout_permille -> held-out).

Output (data/corpus/, ignored by git):
  train.jsonl, heldout.jsonl   one {"id", "source", "text"} object per line, sorted by id
  train.txt.xz                 train documents' text joined by blank lines (for the GPU machine)
  stats.json                   documents and bytes per source and split

Usage: python3 tools/corpus/build_corpus.py [--out data/corpus] [--no-install]
Sources and licences: tools/corpus/SOURCES.md.
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import html
import json
import lzma
import os
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

PACKAGES = [
    "bible-kjv-text", "bible-kjv", "dict-gcide", "dict-foldoc", "dict-jargon", "dict-devil",
    "fortunes", "jargon-text", "python3.11-doc", "linux-doc-6.1", "debian-reference-en",
    "debian-handbook",
]

# Share of documents held out (per mille of the id hash space).
HELDOUT_PERMILLE = 60
# The GCIDE dictionary alone is ~38 MB; keep this share of its chunks so that it does not
# dominate the mix (chosen by id hash, so deterministic).
GCIDE_KEEP_PERMILLE = 500
# Entries of a dictd database per document.
DICT_ENTRIES_PER_DOC = 60
FORTUNES_PER_DOC = 40


# ----------------------------------------------------------------------------- install
def ensure_packages(packages: list[str]) -> None:
    missing = []
    for p in packages:
        r = subprocess.run(["dpkg-query", "-W", "-f=${Status}", p], capture_output=True, text=True)
        if "install ok installed" not in r.stdout:
            missing.append(p)
    if not missing:
        return
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    r = subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", *missing], env=env)
    if r.returncode != 0:
        subprocess.run(["apt-get", "update"], env=env, check=True)
        subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", *missing],
                       env=env, check=True)


# ----------------------------------------------------------------------------- text cleanup
_WS_LINE = re.compile(r"[ \t]+\n")
_MANY_NL = re.compile(r"\n{3,}")


def tidy(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\t", "    ")
    text = "".join(ch for ch in text if ch == "\n" or ch.isprintable())
    text = _WS_LINE.sub("\n", text)
    text = _MANY_NL.sub("\n\n", text)
    return text.strip()


class _HtmlText(HTMLParser):
    SKIP = {"script", "style", "head", "nav", "noscript", "svg"}
    BLOCK = {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "pre", "dt", "dd",
             "table", "section", "blockquote", "ul", "ol", "dl", "title"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.skip = 0
        self.pre = 0

    def handle_starttag(self, tag, attrs):
        if tag in self.SKIP:
            self.skip += 1
        if tag == "pre":
            self.pre += 1
        if tag in self.BLOCK:
            self.out.append("\n\n" if tag not in ("br", "li", "tr", "dt", "dd") else "\n")

    def handle_endtag(self, tag):
        if tag in self.SKIP and self.skip:
            self.skip -= 1
        if tag == "pre" and self.pre:
            self.pre -= 1
        if tag in self.BLOCK:
            self.out.append("\n")

    def handle_data(self, data):
        if self.skip:
            return
        if not self.pre:
            data = re.sub(r"\s+", " ", data)
        self.out.append(data)


def html_to_text(src: str) -> str:
    p = _HtmlText()
    p.feed(src)
    p.close()
    lines = [ln.strip() if not ln.startswith("    ") else ln.rstrip() for ln in "".join(p.out).split("\n")]
    return tidy("\n".join(lines))


_RST_UNDERLINE = re.compile(r"^([=\-~^\"'`#*+_.:])\1{2,}\s*$")
_RST_DIRECTIVE = re.compile(r"^\s*\.\.\s+[\w:\-|]+::.*$|^\s*\.\.\s+_[^:]*:.*$|^\s*\.\.\s*$")
_RST_OPTION = re.compile(r"^\s+:[\w\- ]+:.*$")
_RST_ROLE = re.compile(r":[\w:\-]+:`~?!?([^`<]*?)(?:\s*<[^>]*>)?`")
_RST_LITERAL = re.compile(r"``([^`]+)``")
_RST_LINK = re.compile(r"`([^`<]+?)\s*<[^>]*>`_+")
_RST_REF = re.compile(r"`([^`]+)`_+")
_RST_COMMENT = re.compile(r"^\.\.\s+(?!\w+::)[^\n]*$")
_SPDX = re.compile(r"^\s*\.\.\s*SPDX.*$")


def rst_to_text(src: str) -> str:
    out = []
    in_comment = False
    for ln in src.split("\n"):
        if _SPDX.match(ln):
            continue
        if in_comment:
            if ln.strip() == "" or ln.startswith(" "):
                if ln.strip() == "":
                    in_comment = False
                continue
            in_comment = False
        if _RST_UNDERLINE.match(ln):
            continue
        if _RST_DIRECTIVE.match(ln):
            # toctree/index/etc. bodies are indented option lines; drop those too
            in_comment = ln.strip().startswith((".. toctree", ".. index", ".. only", ".. raw",
                                                ".. kernel-", ".. contents", ".. highlight",
                                                ".. sectionauthor", ".. moduleauthor", ".. _"))
            continue
        if _RST_OPTION.match(ln):
            continue
        ln = _RST_ROLE.sub(r"\1", ln)
        ln = _RST_LINK.sub(r"\1", ln)
        ln = _RST_REF.sub(r"\1", ln)
        ln = _RST_LITERAL.sub(r"\1", ln)
        ln = ln.replace("**", "").replace("\\ ", "")
        out.append(ln)
    return tidy("\n".join(out))


# ----------------------------------------------------------------------------- sources
def b64num(s: str) -> int:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    n = 0
    for ch in s:
        n = n * 64 + alphabet.index(ch)
    return n


def dictd_docs(name: str, keep_permille: int = 1000):
    """A dictd database (index + dictzip) as documents of DICT_ENTRIES_PER_DOC entries."""
    base = Path("/usr/share/dictd")
    data = gzip.decompress((base / f"{name}.dict.dz").read_bytes())
    entries = []
    seen = set()
    for line in (base / f"{name}.index").read_text(encoding="utf-8", errors="replace").splitlines():
        parts = line.split("\t")
        if len(parts) < 3 or parts[0].startswith("00-database") or parts[0].startswith("00database"):
            continue
        off, ln = b64num(parts[1]), b64num(parts[2])
        if (off, ln) in seen:
            continue
        seen.add((off, ln))
        entries.append((off, ln))
    entries.sort()
    docs = []
    for i in range(0, len(entries), DICT_ENTRIES_PER_DOC):
        chunk = entries[i:i + DICT_ENTRIES_PER_DOC]
        doc_id = f"{name}/{i // DICT_ENTRIES_PER_DOC:05d}"
        if keep_permille < 1000 and id_hash(doc_id + "#keep") % 1000 >= keep_permille:
            continue
        parts = []
        for off, ln in chunk:
            t = data[off:off + ln].decode("utf-8", errors="replace")
            t = t.replace("[1913 Webster]", "").replace("[WordNet 1.5]", "").replace("[PJC]", "")
            # GCIDE pronunciation markers: \Ab`di*ca"tion\ -> (Abdication)
            t = re.sub(r"\\([^\\\n]{1,80})\\", lambda m: m.group(1).replace("*", "").replace('"', "").replace("`", "").replace("'", ""), t)
            parts.append(tidy("\n".join(s.strip() for s in t.split("\n"))))
        docs.append((doc_id, "\n\n".join(parts)))
    return docs


def bible_docs():
    out = subprocess.run(["bible", "-l1000", "Gen1:1-Rev22:21"], capture_output=True, text=True,
                         check=True, input="").stdout
    docs = []
    cur_title, cur = None, []
    for ln in out.split("\n"):
        m = re.match(r"^([1-3]?\s?[A-Z][A-Za-z ]+ \d+)\s*$", ln)
        if m:
            if cur_title and cur:
                docs.append((cur_title, cur))
            cur_title, cur = m.group(1).strip(), []
            continue
        m = re.match(r"^\s*(\d+) (.*)$", ln)
        if m and cur_title:
            cur.append(m.group(2).strip())
    if cur_title and cur:
        docs.append((cur_title, cur))
    return [(f"bible/{i:04d}", t + "\n\n" + "\n".join(v)) for i, (t, v) in enumerate(docs)]


def fortune_docs():
    base = Path("/usr/share/games/fortunes")
    docs = []
    for f in sorted(base.iterdir()):
        if f.suffix or not f.is_file():
            continue
        items = [tidy(x) for x in f.read_text(encoding="utf-8", errors="replace").split("\n%\n")]
        items = [x.strip("%").strip() for x in items if x.strip("%").strip()]
        for i in range(0, len(items), FORTUNES_PER_DOC):
            docs.append((f"fortunes/{f.name}/{i // FORTUNES_PER_DOC:04d}",
                         "\n\n".join(items[i:i + FORTUNES_PER_DOC])))
    return docs


def rst_tree_docs(prefix: str, root: Path, skip: tuple[str, ...] = ()):
    docs = []
    for f in sorted(root.rglob("*.rst.txt")):
        rel = f.relative_to(root).as_posix()
        if rel.startswith(skip):
            continue
        text = rst_to_text(f.read_text(encoding="utf-8", errors="replace"))
        if len(text) >= 500:
            docs.append((f"{prefix}/{rel[:-len('.rst.txt')]}", text))
    return docs


def html_files_docs(prefix: str, files: list[Path], root: Path):
    docs = []
    for f in files:
        text = html_to_text(f.read_text(encoding="utf-8", errors="replace"))
        if len(text) >= 500:
            docs.append((f"{prefix}/{f.relative_to(root).as_posix()[:-5]}", text))
    return docs


def jargon_docs():
    raw = gzip.decompress(Path("/usr/share/doc/jargon-text/jargon.txt.gz").read_bytes()).decode(
        "utf-8", errors="replace")
    raw = tidy(raw)
    paras = raw.split("\n\n")
    docs, cur, size, k = [], [], 0, 0
    for p in paras:
        cur.append(p)
        size += len(p)
        if size > 6000:
            docs.append((f"jargon-text/{k:04d}", "\n\n".join(cur)))
            cur, size, k = [], 0, k + 1
    if cur:
        docs.append((f"jargon-text/{k:04d}", "\n\n".join(cur)))
    return docs


def collect():
    src = {}
    src["bible-kjv"] = bible_docs()
    src["gcide"] = dictd_docs("gcide", GCIDE_KEEP_PERMILLE)
    src["foldoc"] = dictd_docs("foldoc")
    src["jargon-dict"] = dictd_docs("jargon")
    src["devil"] = dictd_docs("devil")
    src["jargon-text"] = jargon_docs()
    src["fortunes"] = fortune_docs()
    src["python3.11-doc"] = rst_tree_docs("python3.11-doc", Path("/usr/share/doc/python3.11/html/_sources"),
                                          skip=("whatsnew/changelog",))
    src["linux-doc-6.1"] = rst_tree_docs("linux-doc-6.1", Path("/usr/share/doc/linux-doc-6.1/html/_sources"),
                                         skip=("translations/",))
    dr = Path("/usr/share/debian-reference")
    src["debian-reference-en"] = html_files_docs("debian-reference", sorted(dr.glob("*.en.html")), dr)
    hb = Path("/usr/share/doc/debian-handbook/html/en-US")
    src["debian-handbook"] = html_files_docs("debian-handbook", sorted(hb.glob("*.html")), hb)
    return src


def id_hash(doc_id: str) -> int:
    return int.from_bytes(hashlib.sha256(doc_id.encode()).digest()[:8], "big")


def is_heldout(doc_id: str) -> bool:
    return id_hash(doc_id) % 1000 < HELDOUT_PERMILLE


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="data/corpus")
    ap.add_argument("--no-install", action="store_true", help="do not call apt-get")
    args = ap.parse_args(argv)
    if not args.no_install:
        ensure_packages(PACKAGES)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    src = collect()
    stats = {}
    splits = {"train": [], "heldout": []}
    for name, docs in src.items():
        st = stats.setdefault(name, {"train_docs": 0, "train_bytes": 0, "heldout_docs": 0, "heldout_bytes": 0})
        for doc_id, text in docs:
            text = tidy(text)
            if not text:
                continue
            split = "heldout" if is_heldout(doc_id) else "train"
            splits[split].append({"id": doc_id, "source": name, "text": text})
            st[f"{split}_docs"] += 1
            st[f"{split}_bytes"] += len(text.encode())
    for split, docs in splits.items():
        docs.sort(key=lambda d: d["id"])
        with open(out / f"{split}.jsonl", "w", encoding="utf-8") as f:
            for d in docs:
                f.write(json.dumps(d, ensure_ascii=False) + "\n")
    joined = "\n\n".join(d["text"] for d in splits["train"]).encode()
    with lzma.open(out / "train.txt.xz", "wb", preset=6) as f:
        f.write(joined)
    total = {k: sum(s[k] for s in stats.values()) for k in ("train_docs", "train_bytes", "heldout_docs", "heldout_bytes")}
    stats["_total"] = total
    (out / "stats.json").write_text(json.dumps(stats, indent=1) + "\n")
    for name, s in stats.items():
        print(f"{name:22s} train {s['train_docs']:6d} docs {s['train_bytes'] / 1e6:7.2f} MB   "
              f"heldout {s['heldout_docs']:5d} docs {s['heldout_bytes'] / 1e6:6.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
