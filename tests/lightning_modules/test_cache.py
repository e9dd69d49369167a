"""EncoderCache: a memory tier bounded by bytes (issue 9, item 10), LRU order, disk tier."""

from __future__ import annotations

from pathlib import Path

import torch

from lightning_modules.cache import EncoderCache, VisionFeatures, nbytes


def _entry(kib: int) -> VisionFeatures:
    return VisionFeatures(torch.tensor([1, 2, 2]), torch.zeros(kib * 128, 2), [torch.zeros(kib * 128, 2)])


def test_memory_bounded_by_bytes_lru_first(tmp_path: Path) -> None:
    size = nbytes(_entry(4))  # 8 KiB of features + the grid
    cache = EncoderCache(max_bytes=3 * size, disk_dir=str(tmp_path))
    for key in "abc":
        cache.put(key, _entry(4))
    assert cache.get("a") is not None  # a becomes the most recently used
    cache.put("d", _entry(4))  # over budget: b (least recently used) leaves memory
    assert list(cache.memory) == ["c", "a", "d"] and cache.bytes == 3 * size
    cache.put("big", _entry(12))  # one entry worth three: everything older leaves
    assert list(cache.memory) == ["big"] and cache.bytes <= 3 * size + 24
    assert cache.get("b") is not None and cache.hits == 2  # still on disk
    cache.put("big", _entry(4))  # replacing an entry re-counts its bytes
    assert cache.bytes == sum(nbytes(v) for v in cache.memory.values())
    cache.clear()
    assert cache.bytes == 0 and len(cache) == 0
