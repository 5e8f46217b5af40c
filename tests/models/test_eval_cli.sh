#!/usr/bin/env bash
# akcb-eval CLI: a tiny grid runs, writes CSV/JSON/Markdown, and a re-run skips every finished cell.
set -euo pipefail
bin=$1 src=$2 out=$3
rm -rf "$out"
summ() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print([(c['policy'], c.get('acc_exact', c.get('ppl'))) for c in d['cells']])" "$out/results.json"; }
args=(-m "$src/models/tiny-qwen3" --evaldata "$src/evaldata" --ppl-file "$src/evaldata/heldout_docs.jsonl"
      --tasks passkey --lengths 1024 -n 1 --policies mix --budgets 1/4 --budget-modes bytes
      --ppl-docs 1 --ppl-len 160 --ppl-prefix 128 --short-examples 1 --threads 1 --no-progress -o "$out")
"$bin" "${args[@]}" > "$out.1.log"
for f in results.csv results.json summary.md; do test -s "$out/$f" || { echo "missing $f"; exit 1; }; done
grep -q "from earlier runs" "$out.1.log"
grep -q "(0 from earlier runs)" "$out.1.log" || { echo "first run reused cells"; exit 1; }
before=$(summ)
"$bin" "${args[@]}" > "$out.2.log"
cells=$(sed -n 's/^\([0-9]*\) cells (\([0-9]*\) from earlier runs).*/\1 \2/p' "$out.2.log")
set -- $cells
[ "$1" = "$2" ] || { echo "re-run recomputed cells: $cells"; cat "$out.2.log"; exit 1; }
[ "$before" = "$(summ)" ] || { echo "re-run changed the results"; exit 1; }
grep -q "identical to full" "$out.2.log"
echo "ok: $1 cells, all reused on re-run"
