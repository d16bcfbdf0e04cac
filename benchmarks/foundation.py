"""Foundation benchmark, measured side by side in one run on this machine:

* fine-tune wall time per domain with the default tiny preset (target: <= 5 min each on a 2-core CPU);
* teacher-forced eval throughput at the default batch size vs batch size 1, with the metrics of both
  (they must be identical; target: >= 10x);
* generation metrics (greedy decoding + ROUGE-L) on both val splits at the default batch size vs batch size 1
  (the generations must be identical).

Usage: python benchmarks/foundation.py [--out DIR]   (uses its own cache dir unless KNOWUNDO_CACHE is set)
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=None, help="work directory (default: a temporary one)")
    args = parser.parse_args()
    work = Path(args.out or tempfile.mkdtemp(prefix="knowundo-bench-"))
    os.environ.setdefault("KNOWUNDO_CACHE", str(work / "cache"))

    from knowundo.config import load_config
    from knowundo.data.format import Formatter, encode_items, pad_id_of
    from knowundo.data.knowundo import DataSource, load_domain
    from knowundo.evaluate.generation import generate_answers
    from knowundo.evaluate.metrics.rouge import rouge_l
    from knowundo.evaluate.teacher_forced import aggregate, score_features
    from knowundo.finetune import finetune
    from knowundo.models.load import load_adapter, load_base
    from knowundo.models.tiny import ensure_tiny

    cfg = load_config("tiny")
    started = time.perf_counter()
    ensure_tiny(cfg.tiny, progress=False)
    print(f"tiny base build (once, cached): {time.perf_counter() - started:.1f}s")

    print(f"\n{'domain':10} {'fine-tune s':>11} {'target s':>8}  status")
    for domain in ("privacy", "copyright"):
        started = time.perf_counter()
        finetune(cfg, domain, work / domain, progress=False)
        seconds = time.perf_counter() - started
        print(f"{domain:10} {seconds:11.1f} {300:8d}  {'ok' if seconds <= 300 else 'OVER'}")

    model, tokenizer = load_base(cfg)
    model = load_adapter(model, work / "privacy" / "adapter")
    data = load_domain(DataSource(), "privacy")
    items = [item for scope in data.values() for split in scope.values() for item in split]
    features = encode_items(items, Formatter(tokenizer)).features
    timings, metrics = {}, {}
    for batch_size in (cfg.eval.batch_size, 1):
        score_features(model, features[:8], pad_id_of(tokenizer), batch_size)  # warm-up
        started = time.perf_counter()
        scores = score_features(model, features, pad_id_of(tokenizer), batch_size)
        timings[batch_size] = time.perf_counter() - started
        metrics[batch_size] = aggregate(scores)
    default, one = timings[cfg.eval.batch_size], timings[1]
    print(f"\n{'eval batch':>10} {'items/s':>9} {'accuracy':>9} {'ppl':>8} {'exact':>6}")
    for batch_size, seconds in timings.items():
        m = metrics[batch_size]
        print(
            f"{batch_size:10d} {len(features) / seconds:9.1f} {m['accuracy']:9.3f} {m['ppl']:8.4f} "
            f"{m['exact_match']:6.2f}"
        )
    same = all(abs(metrics[cfg.eval.batch_size][k] - metrics[1][k]) < 1e-4 for k in ("accuracy", "ppl", "exact_match"))
    print(f"speed-up batch {cfg.eval.batch_size} vs 1: {one / default:.1f}x (target >= 10x); metrics identical: {same}")

    val = [item for scope in data.values() for item in scope["val"]]
    formatter = Formatter(tokenizer)
    timings, generated = {}, {}
    for batch_size in (cfg.eval.batch_size, 1):
        generate_answers(model, formatter, val[:4], batch_size, cfg.eval.max_new_tokens)  # warm-up
        started = time.perf_counter()
        generated[batch_size] = generate_answers(model, formatter, val, batch_size, cfg.eval.max_new_tokens)
        timings[batch_size] = time.perf_counter() - started
    print(f"\n{'gen batch':>10} {'items/s':>9} {'ROUGE-L R':>9}")
    for batch_size, seconds in timings.items():
        rouge = sum(
            rouge_l(g["generation"], item["labels"])["rougeL_recall"] for g, item in zip(generated[batch_size], val)
        ) / len(val)
        print(f"{batch_size:10d} {len(val) / seconds:9.1f} {rouge:9.2f}")
    same = [g["generation"] for g in generated[1]] == [g["generation"] for g in generated[cfg.eval.batch_size]]
    print(
        f"generation speed-up batch {cfg.eval.batch_size} vs 1: {timings[1] / timings[cfg.eval.batch_size]:.1f}x; "
        f"generations identical: {same}"
    )


if __name__ == "__main__":
    main()
