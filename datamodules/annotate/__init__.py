"""Rationale (CoT) annotation for SFT with reasoning (paper, Appendix C), end to end.

Two commands (``python -m datamodules.annotate --help``; guide: ``docs/annotation.md``)::

    # 1. the SFT pair design of one training set, as a CSV to annotate
    python -m datamodules.annotate pairs --benchmark lsvq_train --label-file LABELS \\
        --video-root /data/LSVQ --num-pairs 18000 --seed 0 --out pairs.csv
    # 2. a strong multimodal model behind an OpenAI-compatible endpoint writes the rationales
    python -m datamodules.annotate run --pairs pairs.csv --out rationales.jsonl \\
        --base-url http://localhost:8000/v1 --model Qwen/Qwen2.5-VL-72B-Instruct \\
        --video-root /data/LSVQ --concurrency 32

then SFT reads ``rationales.jsonl`` through ``data.init_args.rationale_file``.

Modules: :mod:`.descriptors` (label words, verdict sentence), :mod:`.verify` (the acceptance
rule), :mod:`.prompt` (versioned template file), :mod:`.records` (the JSONL), :mod:`.client`
(HTTP with backoff), :mod:`.media` (frames / video_url), :mod:`.runner` (concurrency),
:mod:`.pairs_csv`, :mod:`.cli`. Only the light ones are imported here.
"""

from datamodules.annotate.descriptors import (
    DESCRIPTOR_RULES,
    DRAW_THRESHOLD,
    margin_descriptor,
    margin_sentence,
    verdict_sentence,
)
from datamodules.annotate.pairs_csv import PairRow, read_pairs, write_pairs
from datamodules.annotate.prompt import load_template
from datamodules.annotate.records import read_records, summarize
from datamodules.annotate.verify import verdict_agrees, verify_reply

__all__ = [
    "DESCRIPTOR_RULES",
    "DRAW_THRESHOLD",
    "margin_descriptor",
    "margin_sentence",
    "verdict_sentence",
    "PairRow",
    "read_pairs",
    "write_pairs",
    "load_template",
    "read_records",
    "summarize",
    "verdict_agrees",
    "verify_reply",
]
