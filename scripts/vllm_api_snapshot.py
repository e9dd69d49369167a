"""Record the vLLM API surface the rollout engine uses, from an unpacked vLLM wheel (no install).

    pip download vllm==0.33.0 --no-deps -d /tmp/src && unzip -q /tmp/src/vllm-0.33.0-*.whl -d /tmp/src/vllm033
    python scripts/vllm_api_snapshot.py /tmp/src/vllm033/vllm > tests/callbacks/vllm033_api.json

vLLM pins torch/transformers releases this environment does not use, so the CPU tests cannot import
it; ``tests/callbacks/test_vllm_engine.py`` checks its stand-in engine, the ``SamplingParams`` and
``LLM`` keywords and the output fields against this snapshot instead (fields of ``SamplingParams``,
``EngineArgs``, ``CompletionOutput``, ``Logprob``; parameters of the ``LLM`` methods called), and
``tests/test_setup.py`` checks that the ``[vllm]`` extra resolves against the wheel's pins
(``requires``: Requires-Python and the torch / torchvision / transformers / tokenizers pins).
"""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path
from typing import Any

LLM_METHODS = ("__init__", "generate", "apply_model", "sleep", "wake_up", "reset_prefix_cache")
PINNED = ("torch", "torchvision", "transformers", "tokenizers")


def requires(root: Path) -> dict[str, str]:
    """Requires-Python and the :data:`PINNED` requirements of the wheel's METADATA (no extras)."""
    meta = next(root.parent.glob("vllm-*.dist-info")) / "METADATA"
    out = {}
    for line in meta.read_text().splitlines():
        key, _, value = line.partition(": ")
        if key == "Requires-Python":
            out["python"] = value
        elif key == "Requires-Dist" and "extra ==" not in value:
            name = value.split(";")[0].strip()
            base = name.split("<")[0].split(">")[0].split("=")[0].split("!")[0].strip()
            if base in PINNED:
                out[base] = name[len(base) :].strip()
    return out


def _class(root: Path, path: str, name: str) -> ast.ClassDef:
    tree = ast.parse((root / path).read_text())
    return next(n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == name)


def fields(root: Path, path: str, name: str) -> list[str]:
    """Annotated class attributes (dataclass / msgspec fields) of ``name`` in ``path``."""
    body = _class(root, path, name).body
    return sorted(s.target.id for s in body if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name))


def params(root: Path, path: str, name: str, method: str) -> dict[str, Any]:
    """Parameter names of ``name.method`` (``self`` left out) and whether it takes ``**kwargs``."""
    fn = next(s for s in _class(root, path, name).body if isinstance(s, ast.FunctionDef) and s.name == method)
    a = fn.args
    return {
        "params": [x.arg for x in a.posonlyargs + a.args + a.kwonlyargs if x.arg != "self"],
        "var_kwargs": a.kwarg is not None,
    }


def snapshot(root: Path) -> dict[str, Any]:
    """The API record of the vLLM source tree at ``root`` (the ``vllm`` package folder)."""
    return {
        "source": f"{root} read with ast by scripts/vllm_api_snapshot.py",
        "requires": requires(root),
        "SamplingParams": fields(root, "sampling_params.py", "SamplingParams"),
        "EngineArgs": fields(root, "engine/arg_utils.py", "EngineArgs"),
        "CompletionOutput": fields(root, "outputs.py", "CompletionOutput"),
        "RequestOutput.__init__": params(root, "outputs.py", "RequestOutput", "__init__"),
        "Logprob": fields(root, "logprobs.py", "Logprob"),
        "LLM": {m: params(root, "entrypoints/llm.py", "LLM", m) for m in LLM_METHODS},
    }


if __name__ == "__main__":
    print(json.dumps(snapshot(Path(sys.argv[1])), indent=1))
