"""`make bench`: run every benchmark in turn (each writes benchmarks/results/<name>.json and prints
its own table). Pass ``--quick`` to use each benchmark's small setting where it has one."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHES = ["ranking_bench.py", "decode_bench.py", "train_bench.py", "grpo_bench.py", "gpu_path_bench.py"]


def main(argv: list[str]) -> int:
    failed = []
    for name in BENCHES:
        script = HERE / name
        if not script.exists():
            print(f"[bench] {name}: not present, skipped")
            continue
        print(f"\n[bench] === {name} ===", flush=True)
        extra = ["--quick"] if "--quick" in argv and name == "ranking_bench.py" else []
        if subprocess.call([sys.executable, str(script), *extra], cwd=HERE.parent) != 0:
            failed.append(name)
    if failed:
        print(f"[bench] failed: {failed}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
