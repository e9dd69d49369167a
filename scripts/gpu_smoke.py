"""Smoke test of the GPU path (issue 9) on one machine, offline: one line per check, then JSON.

    python scripts/gpu_smoke.py                      # CUDA: random-init Qwen3-VL-4B architecture, 4 layers
    python scripts/gpu_smoke.py --backbone /models/Qwen3-VL-4B-Instruct   # CUDA, the real weights
    python scripts/gpu_smoke.py --device cpu         # the same checks on the embedded tiny model (<= 3 min)

Prints ``PASS|FAIL|SKIP <check>: key=value, ...`` per check as it finishes, then the JSON summary
(also written to ``--out``); exits 1 when any check failed (a skip is not a failure), 2 on bad
arguments.

Checks (a step whose package -- DeepSpeed, vLLM -- or device is missing says so and is skipped):

1. ``sft_bf16_mixed``   one SFT step with the GPU configs' dtype (bf16 storage) and precision
                        (bf16-mixed), lr 1e-5: share of language-model layer weights that moved.
2. ``sft_zero2``        one SFT step under DeepSpeed ZeRO-2 (bf16, no autocast): share of the
                        float32 masters that moved (read from the checkpoint folder consolidated by
                        DeepSpeed's zero_to_fp32); the folder feeds check 4.
3. ``sft_template``     a few SFT steps at a high lr teach the template: greedy answer is valid.
4. ``handoff``          save -> ``init_from`` (file, and the ZeRO-2 folder when there is one): the
                        MC-GRPO module starts from exactly the saved weights.
5. ``mcgrpo_hf``        one MC-GRPO step with HF rollouts: format rate > 0, policy moved, tokens/s.
6. ``mcgrpo_vllm``      one MC-GRPO step with the colocated vLLM engine: every rollout ends at the
                        end token (or the budget), format rate > 0, no placeholder sampled, engine
                        vs trainer log-prob gap and importance weights.
7. ``predict``          pairs/s of ``predict_margin``; peak GPU memory in the summary.

Models: ``--arch real`` (the default on CUDA) is the architecture of ``--config-json`` (default
``../shared/reference/qwen3-vl-4b-instruct.config.json``: real widths, heads, M-RoPE sections,
vocabulary size) with ``--layers`` text layers and vision blocks and random weights, with the
embedded tokenizer/processor (its special-token ids written into the config) -- no download;
``--backbone`` loads real weights instead; the motion encoder is always the tiny SlowFast;
activation checkpointing is on, as in the GPU overlays. Each
check reports its seconds and, on CUDA, its peak PyTorch memory (vLLM allocates outside PyTorch:
the summary also gives the device's used memory at the end). vLLM runs with conf/gpu/vllm.yaml's
engine settings (``--vllm-memory`` replaces the memory share).
"""

from __future__ import annotations

import argparse
import functools
import gc
import importlib.util
import json
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere in the checkout

from lightning.pytorch import Trainer  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from callbacks.rollout import RolloutCallback  # noqa: E402
from lightning_modules import backbone as bb  # noqa: E402
from lightning_modules.versusq import VersusQModule  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))  # gpu_smoke_parts beside this file
from gpu_smoke_parts import (  # noqa: E402
    LM_LAYERS,
    REFERENCE,
    pairs,
    shrunk_real_backbone,
    vllm_settings,
)


class Smoke:
    """Runs the checks, prints one line each, collects the JSON summary."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args, self.cuda = args, args.device == "cuda"
        self.results: dict[str, dict[str, Any]] = {}
        self.batch = pairs(2, args.motion_frames)
        self.folder = Path(tempfile.mkdtemp(prefix="versusq-smoke-"))

    def module(self, **kwargs: Any) -> VersusQModule:
        settings = {
            "motion_frames": self.args.motion_frames,
            "head_hidden": 64,
            "dtype": "bfloat16",
            "max_new_tokens": self.args.max_new_tokens,
            "num_generations": 2,
            "lr_backbone": 1e-5,
            "lr_grpo": 1e-5,
            "warmup_steps": 0,
            "attn_implementation": None,
            "activation_checkpointing": True,
            **self.args.settings,
        }  # on in the GPU overlays
        return VersusQModule(**{**settings, **kwargs})

    def trainer(self, steps: int, **kwargs: Any) -> Trainer:
        kwargs = {"accelerator": "gpu" if self.cuda else "cpu", "devices": 1, "precision": "bf16-mixed", **kwargs}
        return Trainer(
            max_steps=steps,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            default_root_dir=str(self.folder),
            **kwargs,
        )

    def fit(self, module: VersusQModule, steps: int, **trainer_kwargs: Any) -> tuple[Trainer, float]:
        """``steps`` optimiser steps; returns the trainer and the moved share of LM layer weights."""
        layers = {n: p.detach().float().cpu().clone() for n, p in module.named_parameters() if LM_LAYERS in n}
        trainer = self.trainer(steps, **trainer_kwargs)
        trainer.fit(module, train_dataloaders=DataLoader([self.batch] * steps, batch_size=None, collate_fn=lambda b: b))
        now = {n: p.detach().float().cpu() for n, p in module.named_parameters() if n in layers}
        moved = sum(int((now[n] != before).sum()) for n, before in layers.items())
        return trainer, moved / sum(t.numel() for t in layers.values())

    def check(self, name: str, fn: Callable[[], dict[str, Any]], needs: tuple[str, ...] = ()) -> None:
        missing = [p for p in needs if p != "cuda" and importlib.util.find_spec(p) is None]
        reason = (
            "needs a CUDA GPU"
            if "cuda" in needs and not self.cuda
            else f"{missing[0]} not installed (pip install 'versusq[{missing[0]}]')"
            if missing
            else None
        )
        start = time.perf_counter()
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()
        if reason:
            result = {"status": "skip", "reason": reason}
        else:
            try:
                result = {"status": "pass", **fn()}
                if result.pop("ok", True) is False:
                    result["status"] = "fail"
            except Exception as error:  # one failing check must not hide the others
                result = {"status": "fail", "error": f"{type(error).__name__}: {error}"}
        result["seconds"] = round(time.perf_counter() - start, 1)
        gc.collect()  # the check's modules, trainers and optimizer states (real widths: GBs)
        if self.cuda and reason is None:
            result["peak_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
            torch.cuda.empty_cache()
        self.results[name] = result
        details = ", ".join(f"{k}={v}" for k, v in result.items() if k != "status")
        print(f"{result['status'].upper():4s} {name}: {details}", flush=True)

    # ------------------------------------------------------------------ checks
    def sft_bf16_mixed(self) -> dict[str, Any]:
        _, moved = self.fit(self.module(), 1)
        return {"moved_lm_weights": round(moved, 3), "ok": moved >= 0.8}

    def sft_zero2(self) -> dict[str, Any]:
        """ZeRO-2 keeps the float32 masters in its optimizer and refreshes bf16 copies of them in
        the module: one lr-1e-5 step moves the masters but rounds away in most bf16 copies, so the
        moved share is read from the checkpoint consolidated from the ZeRO shards (item 3's path)."""
        from lightning_modules.checkpoints import load_state_dict

        module = self.module()
        before = {n: p.detach().float().cpu().clone() for n, p in module.named_parameters() if LM_LAYERS in n}
        trainer, moved_bf16 = self.fit(module, 1, strategy="deepspeed_stage_2")
        self.zero2_ckpt = self.folder / "zero2.ckpt"
        trainer.save_checkpoint(self.zero2_ckpt)
        masters = load_state_dict(self.zero2_ckpt)  # consolidated float32 (DeepSpeed's zero_to_fp32)
        moved = sum(int((masters[n].float() != t).sum()) for n, t in before.items()) / sum(
            t.numel() for t in before.values()
        )
        return {
            "moved_lm_weights": round(moved, 3),
            "moved_bf16_copies": round(moved_bf16, 3),
            "checkpoint_folder": self.zero2_ckpt.is_dir(),
            "ok": moved >= 0.8 and self.zero2_ckpt.is_dir(),
        }

    def sft_template(self) -> dict[str, Any]:
        lr = self.args.teach_lr
        sft = self.module(lr_backbone=lr, lr_projector=lr, lr_head=lr)
        trainer, _ = self.fit(sft, self.args.teach_steps)
        self.sft_ckpt = self.folder / "sft.ckpt"
        trainer.save_checkpoint(self.sft_ckpt)
        margins, texts, forced = sft.predict_margin(self.batch)
        valid = int((torch.isfinite(margins) & ~forced).sum())  # reached </think><answer> itself
        return {
            "steps": self.args.teach_steps,
            "valid_greedy": f"{valid}/{len(margins)}",
            "ok": valid > 0,
            "text": texts[0][:60],
        }

    def handoff(self) -> dict[str, Any]:
        sources = [self.sft_ckpt] + ([self.zero2_ckpt] if getattr(self, "zero2_ckpt", None) else [])
        out = {}
        for source in sources:
            saved = (
                torch.load(source / "checkpoint" / "mp_rank_00_model_states.pt", weights_only=False)["module"]
                if source.is_dir()
                else torch.load(source, weights_only=False)["state_dict"]
            )
            module = self.module(phase="mcgrpo", init_from=str(source))
            state = module.state_dict()
            same = (
                all(torch.equal(state[k].float(), v.float()) for k, v in saved.items())
                if not source.is_dir()
                else all(torch.allclose(state[k].float(), v.float(), atol=1e-2) for k, v in saved.items())
            )
            out[source.name] = same
        self.grpo_init = str(self.sft_ckpt)
        return {**out, "ok": all(out.values())}

    def mcgrpo(self, callbacks: list[Any]) -> tuple[dict[str, Any], Trainer]:
        module = self.module(phase="mcgrpo", init_from=self.grpo_init)
        trainer, moved = self.fit(module, 1, callbacks=callbacks)
        m = {k: float(v) for k, v in trainer.callback_metrics.items()}
        return {
            "moved_lm_weights": round(moved, 3),
            "format_rate": m["train/format_rate"],
            "reward_mean": round(m["train/reward_mean"], 3),
            "rollout_tokens_per_s": round(m["train/rollout_tokens_per_s"], 1),
        }, trainer

    def mcgrpo_hf(self) -> dict[str, Any]:
        result, _ = self.mcgrpo([RolloutCallback(engine="hf", temperature=self.args.temperature)])
        return {**result, "ok": result["moved_lm_weights"] > 0.5 and result["format_rate"] > 0}

    def mcgrpo_vllm(self) -> dict[str, Any]:
        from callbacks import vllm_engine as ve

        seen: list[Any] = []
        real = ve.VLLMRollout.generate
        ve.VLLMRollout.generate = lambda engine, *a: seen.append(real(engine, *a)) or seen[-1]  # type: ignore[method-assign]
        vllm = vllm_settings(self.args.vllm_memory, 4096)
        try:
            result, trainer = self.mcgrpo(
                [RolloutCallback(engine="vllm", temperature=self.args.temperature, vllm=vllm)]
            )
        finally:
            ve.VLLMRollout.generate = real  # type: ignore[method-assign]
        r, model = seen[0], trainer.lightning_module.model
        lengths = r.response_mask.sum(1)
        last = r.response_ids.gather(1, (lengths - 1).clamp(min=0)[:, None]).squeeze(1)
        ended = bool(
            (
                (torch.isin(last, torch.tensor(model.end_token_ids(), device=last.device)))
                | (lengths == self.args.max_new_tokens)
            ).all()
        )
        m = trainer.callback_metrics
        placeholders = bool(
            torch.isin(
                r.response_ids[r.response_mask], torch.tensor(model.never_generate, device=r.response_ids.device)
            ).any()
        )
        return {
            **result,
            "all_end_at_end_token_or_budget": ended,
            "placeholder_sampled": placeholders,
            "dropped": float(m["train/dropped_rollouts"]),
            "logprob_gap": round(float(m["train/engine_gap_mean"]), 4),
            "is_weight_mean": round(float(m["train/engine_weight_mean"]), 3),
            "ok": ended and not placeholders and result["format_rate"] > 0,
        }

    def predict(self) -> dict[str, Any]:
        batch = pairs(8, self.args.motion_frames)
        sft = self.module(init_from=str(self.sft_ckpt))
        sft.predict_margin(pairs(1, self.args.motion_frames))  # warm-up
        start = time.perf_counter()
        margins, _, _ = sft.predict_margin(batch)
        return {"pairs_per_s": round(len(margins) / (time.perf_counter() - start), 2)}

    def run(self) -> dict[str, Any]:
        self.check("sft_bf16_mixed", self.sft_bf16_mixed)
        self.check("sft_zero2", self.sft_zero2, needs=("cuda", "deepspeed"))
        self.check("sft_template", self.sft_template)
        self.check("handoff", self.handoff)
        self.check("mcgrpo_hf", self.mcgrpo_hf)
        self.check("mcgrpo_vllm", self.mcgrpo_vllm, needs=("cuda", "vllm"))
        self.check("predict", self.predict)
        summary = {
            "device": self.args.device,
            "model": self.args.model_name,
            "checks": self.results,
            "passed": all(r["status"] != "fail" for r in self.results.values()),
        }
        if self.cuda:  # vLLM's memory (cumem) is outside PyTorch's allocator: also the device's view
            summary["peak_gpu_memory_gib"] = max((r.get("peak_gib", 0.0) for r in self.results.values()), default=0.0)
            free, total = torch.cuda.mem_get_info()
            summary["gpu_memory_used_gib_at_end"] = round((total - free) / 2**30, 2)
        return summary


def choose_model(args: argparse.Namespace) -> str:
    """Install the backbone the checks build (the ``load_backbone`` seam); returns its description.

    ``--backbone``: real weights (hub id or local folder, loaded by ``load_backbone`` itself);
    ``--arch real``: the ``--config-json`` architecture shrunk to ``--layers``, random weights;
    ``--arch tiny``: the embedded tiny model.
    """
    if args.backbone:
        args.settings["backbone"] = args.backbone
        args.settings["attn_implementation"] = "sdpa"
        return f"{args.backbone} (real weights)"
    if args.arch == "tiny":
        return "tiny (embedded)"
    if not args.config_json.is_file():
        raise FileNotFoundError(
            f"--config-json {args.config_json} not found (the real Qwen3-VL-4B-Instruct config.json)"
        )
    bb.load_backbone = functools.partial(shrunk_real_backbone, args.config_json, args.layers)
    return f"{args.config_json.name} architecture, {args.layers} layers, random init"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Parse, pick the model, run the checks, print and write the JSON summary."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument(
        "--arch",
        choices=["real", "tiny"],
        default=None,
        help="real: --config-json shrunk to --layers (default on cuda); tiny (default on cpu)",
    )
    parser.add_argument("--backbone", default=None, help="real weights: a Qwen3-VL hub id or local folder")
    parser.add_argument("--config-json", type=Path, default=REFERENCE, help="Qwen3-VL config.json (--arch real)")
    parser.add_argument("--layers", type=int, default=4, help="text layers = vision blocks (--arch real)")
    parser.add_argument("--teach-steps", type=int, default=30)
    parser.add_argument(
        "--teach-lr",
        type=float,
        default=None,
        help="lr of the template-teaching SFT (default 2e-3 random init, 2e-5 real weights)",
    )
    parser.add_argument("--max-new-tokens", type=int, default=24)
    parser.add_argument(
        "--temperature",
        type=float,
        default=0.2,
        help="rollout temperature of both engines (low: the briefly taught model keeps the format)",
    )
    parser.add_argument("--vllm-memory", type=float, default=0.2, help="vLLM gpu_memory_utilization")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON summary here")
    args = parser.parse_args(argv)
    args.motion_frames, args.settings = 16, {}
    args.arch = args.arch or ("real" if args.device == "cuda" else "tiny")
    args.teach_lr = args.teach_lr or (2e-5 if args.backbone else 2e-3)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA GPU visible (use --device cpu for the tiny model)")
    try:
        args.model_name = choose_model(args)
    except FileNotFoundError as error:
        parser.error(str(error))
    warnings.filterwarnings("ignore")
    summary = Smoke(args).run()
    text = json.dumps(summary, indent=1, default=str)
    print(text)
    if args.out:
        args.out.write_text(text)
    return summary


if __name__ == "__main__":
    sys.exit(0 if main()["passed"] else 1)
