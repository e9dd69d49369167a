"""SFT training pairs from an annotation JSONL (``data.init_args.rationale_file``), with coverage.

The file written by ``python -m datamodules.annotate run`` holds one record per pair of the SFT
pair design (``annotate pairs``), each ``accepted``, ``rejected`` or ``failed``. For one training
table the SFT pairs are its **accepted** records that still pass, in this order:

* both videos are rows of the table, in one calibration group (other records belong to other
  tables and are not counted here);
* the kept verdict agrees with the *table's* margin (:func:`verdict_agrees`: labels edited since
  annotation, or a record hand-edited, would otherwise teach the wrong direction);
* both videos are on disk.

Everything else is dropped from SFT and counted in :class:`Coverage`; rejected and failed records
never reach training. ``reasoning=false`` uses the same pairs with empty rationales, so the two SFT
variants of the paper's ablation see identical data (Appendix B). No usable pair is an error
naming the file.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from datamodules.annotate.records import Key
from datamodules.annotate.verify import verdict_agrees
from datamodules.pairs import PairList, pairs_from_names

__all__ = ["Coverage", "annotated_pairs"]


@dataclass
class Coverage:
    """How many of a table's annotated pairs SFT trains on, and why the others are left out.

    Attributes:
        table: training table name.
        file: the rationale file.
        listed: records whose two videos are in the table (same group).
        used: pairs SFT trains on.
        rejected: rejected records by reason.
        failed: failed records by error kind.
        disagree: accepted records whose verdict disagrees with the table's margin.
        absent: accepted records with a video not on disk.
        capped: usable accepted records left out by ``num_train_pairs``.
    """

    table: str
    file: str
    listed: int = 0
    used: int = 0
    rejected: Counter = field(default_factory=Counter)
    failed: Counter = field(default_factory=Counter)
    disagree: int = 0
    absent: int = 0
    capped: int = 0

    def message(self) -> str:
        """One line for the setup log."""

        def kinds(c: Counter) -> str:
            return ", ".join(f"{k} {v}" for k, v in sorted(c.items())) or "none"

        share = 100.0 * self.used / self.listed if self.listed else 0.0
        return (
            f"rationale file {self.file}: {self.table!r} trains on {self.used} of its "
            f"{self.listed} annotated pairs ({share:.1f}%); dropped from SFT: rejected "
            f"{sum(self.rejected.values())} ({kinds(self.rejected)}), failed "
            f"{sum(self.failed.values())} ({kinds(self.failed)}), verdict disagrees with the "
            f"labels {self.disagree}, video not on disk {self.absent}, over num_train_pairs "
            f"{self.capped}"
        )


def _in_table(table: Any, records: dict[Key, dict], group_key: str | None) -> list[Key]:
    """Keys of the records whose two videos are rows of ``table`` in one group, sorted."""
    lookup = {n: k for k, n in enumerate(table.names)}
    extra = getattr(table, "extra", None) or {}
    group = extra.get(group_key) if group_key else None
    return [
        (a, b)
        for a, b in sorted(records)
        if a in lookup and b in lookup and a != b and (group is None or group[lookup[a]] == group[lookup[b]])
    ]


def annotated_pairs(
    table: Any, records: dict[Key, dict[str, Any]], num_pairs: int, seed: int, group_key: str | None, file: str
) -> tuple[PairList, list[str], Coverage]:
    """The SFT pairs of ``table`` from annotation ``records`` (module docstring), with coverage.

    Args:
        table: a training :class:`~datamodules.benchmarks.VideoTable`.
        records: :func:`datamodules.annotate.records.read_records` of the file.
        num_pairs: at most this many pairs (a seeded subset when more are usable).
        seed: seed of that subset.
        group_key: ``extra`` column delimiting calibration groups.
        file: the file's path, for messages.

    Raises:
        ValueError: no record gives a usable pair for this table (file, table and counts named).
    """
    cov = Coverage(str(table.benchmark), file)
    mos = np.asarray(table.mos, dtype=np.float64)
    row = {n: k for k, n in enumerate(table.names)}
    missing = set(table.missing)
    usable: list[Key] = []
    for key in _in_table(table, records, group_key):
        rec = records[key]
        cov.listed += 1
        if rec["status"] != "accepted":
            counts = cov.rejected if rec["status"] == "rejected" else cov.failed
            counts[str(rec.get("reason"))] += 1
        elif not verdict_agrees(str(rec["rationale"]), float(mos[row[key[0]]] - mos[row[key[1]]])):
            cov.disagree += 1
        elif key[0] in missing or key[1] in missing:
            cov.absent += 1
        else:
            usable.append(key)
    if not usable:
        raise ValueError(
            f"{file}: no usable rationale for training table {table.benchmark!r}: " + cov.message().split(": ", 1)[1]
        )
    if len(usable) > num_pairs:
        pick = np.sort(np.random.default_rng(seed).permutation(len(usable))[:num_pairs])
        cov.capped = len(usable) - num_pairs
        usable = [usable[k] for k in pick]
    cov.used = len(usable)
    return pairs_from_names(table, usable), [str(records[k]["rationale"]) for k in usable], cov
