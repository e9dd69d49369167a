"""The module's inference API (``predict_margin`` / ``predict_score``), mixed into ``VersusQModule``.

Callbacks call these; the model call itself is :meth:`lightning_modules.model.VersusQModel.respond`
(greedy rationale -> validity rule -> head, forced close of a response that ran out of budget).
Here the answers become margins (or, for the pointwise ablation, score differences), and the
NaN answers (NTP without a number) and forced closes are counted and logged.
"""

from __future__ import annotations

from typing import Any

import torch


class InferenceMixin:
    """``predict_margin`` / ``predict_score`` for a LightningModule with ``self.model`` (a ``VersusQModel``).

    The host sets ``parse_failures`` and ``forced_closes`` to 0 and has ``hparams.target``.
    """

    parse_failures: int
    forced_closes: int

    def _count(self, name: str, n: int) -> None:
        """Add ``n`` to the ``parse_failures`` / ``forced_closes`` counter; log its running total."""
        setattr(self, name, getattr(self, name) + n)
        if n and self._trainer is not None and not self._trainer.predicting:
            # Lightning forbids self.log in predict; the evaluation callback reports them there
            self.log(name, float(getattr(self, name)), reduce_fx="max")

    def _respond(self, batch: Any) -> tuple[torch.Tensor, list[str], torch.Tensor]:
        values, texts, forced = self.model.respond(batch)
        self._count("parse_failures", int(values.isnan().sum()))
        self._count("forced_closes", int(forced.sum()))
        return values, texts, forced

    @torch.no_grad()
    def predict_margin(self, batch: Any) -> tuple[torch.Tensor, list[str], torch.Tensor]:
        """Signed margins ``(B,)``, rationales and forced flags ``(B,)`` bool of a ``PairBatch``.

        A forced answer's response did not end in ``</think><answer>`` and was closed
        (:func:`template.force_close`) before the head was read; NaN only for the NTP readout
        without a parsable number. The pointwise-target ablation scores both videos with
        :meth:`predict_score` and subtracts (``s_a - s_b``); forced if either side was.
        """
        if self.hparams.target == "pointwise":
            b = len(batch.clips_a)
            scores, texts, forced = self._respond_clips(list(batch.clips_a) + list(batch.clips_b))
            return (
                scores[:b] - scores[b:],
                [f"A: {x} B: {y}" for x, y in zip(texts[:b], texts[b:])],
                forced[:b] | forced[b:],
            )
        return self._respond(batch)

    def _respond_clips(self, clips: list[Any]) -> tuple[torch.Tensor, list[str], torch.Tensor]:
        """Pointwise scores of ``clips`` (``None`` entries: NaN score, empty text, not forced)."""
        values, texts, forced = self._respond(_Clips(clips))
        present = torch.tensor([c is not None for c in clips], dtype=torch.bool)
        scores = torch.full((len(clips),), float("nan"))
        scores[present] = values
        flags = torch.zeros(len(clips), dtype=torch.bool)
        flags[present] = forced
        it = iter(texts)
        return scores, [next(it) if p else "" for p in present.tolist()], flags

    @torch.no_grad()
    def predict_score(self, batch: Any) -> tuple[torch.Tensor, list[str], torch.Tensor]:
        """Pointwise ablation: score, rationale and forced flag per video of a ``VideoBatch``."""
        if hasattr(batch, "clips_a"):
            raise TypeError("predict_score takes a VideoBatch (clips), not a PairBatch")
        return self._respond_clips(list(batch.clips))


class _Clips:
    """A ``VideoBatch``-shaped view of a list of clips (the pointwise scoring of pairs)."""

    def __init__(self, clips: list[Any]) -> None:
        self.clips = clips
