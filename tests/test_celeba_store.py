"""CelebA held once as a uint8 store: built from a folder of JPEGs in torchvision's layout (made here), reused,
rebuilt when the folder changes, split by CelebA's partition file, and trained on a minibatch at a time."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from misgan_core import DataSpec, MisGAN, MisGANConfig, load_complete
from misgan_core.data import CELEBA_STORE, DatasetError


def _faces(root: Path, n: int, test_from: int) -> Path:
    """n 178x218 JPEGs like CelebA's aligned faces: a blue 140x140 centre on a red frame; example i has
    green i * 10 in the centre, so each one is recognisable after cropping and resizing."""
    folder = root / "celeba" / "img_align_celeba"
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        img = np.zeros((218, 178, 3), dtype=np.uint8)
        img[..., 0] = 255
        top, left = (218 - 140) // 2, (178 - 140) // 2
        img[top:top + 140, left:left + 140] = (0, 10 * i, 255)
        Image.fromarray(img).save(folder / f"{i + 1:06d}.jpg", quality=98)
    lines = [f"{i + 1:06d}.jpg {2 if i >= test_from else 0}" for i in range(n)]
    (root / "celeba" / "list_eval_partition.txt").write_text("\n".join(lines) + "\n")
    return root / "celeba" / CELEBA_STORE


def test_the_store_is_built_once_as_uint8_and_reused(tmp_path) -> None:
    store = _faces(tmp_path, 6, test_from=4)
    data = load_complete("celeba", tmp_path, split="all")
    assert store.exists() and data.x.dtype == torch.uint8 and data.x.shape == (6, 3, 64, 64)
    centre = data.x.float().mean((2, 3))  # the red frame is cropped away: blue faces, green = 10 i
    assert torch.allclose(centre[:, 2], torch.full((6,), 255.0), atol=8)  # JPEG blurs the crop edge a little
    assert torch.allclose(centre[:, 0], torch.zeros(6), atol=8)
    assert torch.allclose(centre[:, 1], 10.0 * torch.arange(6), atol=8)
    made = store.stat().st_mtime_ns
    again = load_complete("celeba", tmp_path, split="all")
    assert store.stat().st_mtime_ns == made and torch.equal(again.x, data.x)  # reused, not rebuilt
    assert len(load_complete("celeba", tmp_path, split="train").x) == 4
    test = load_complete("celeba", tmp_path, split="test")
    assert torch.equal(test.x, data.x[4:])
    assert len(load_complete("celeba", tmp_path, split="all", limit=3).x) == 3
    _faces(tmp_path, 7, test_from=4)  # a new image: the store no longer matches the folder
    assert load_complete("celeba", tmp_path, split="all").x.shape[0] == 7


def test_an_interrupted_build_leaves_no_store(tmp_path, monkeypatch) -> None:
    store = _faces(tmp_path, 4, test_from=3)
    calls = {"n": 0}
    real_open = Image.open

    def failing_open(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real_open(*args, **kwargs)

    monkeypatch.setattr(Image, "open", failing_open)
    with pytest.raises(KeyboardInterrupt):
        load_complete("celeba", tmp_path)
    assert not store.exists() and not list(store.parent.glob(".*tmp"))


def test_missing_celeba_says_where_to_put_it(tmp_path) -> None:
    with pytest.raises(DatasetError, match="img_align_celeba"):
        load_complete("celeba", tmp_path)


@pytest.mark.slow
def test_misgan_trains_on_the_compact_store_a_batch_at_a_time(tmp_path) -> None:
    _faces(tmp_path, 8, test_from=6)
    config = MisGANConfig(data=DataSpec(dataset="celeba", data_dir=str(tmp_path), mask="square", mask_size=32),
                          arch="fc", imputer=True, batch_size=4, steps=2, fid_every=0, sample_every=1000)
    gan = MisGAN(config, run_dir=tmp_path / "run")
    assert gan.data.compact and gan._x.dtype == torch.uint8 and gan._m.dtype == torch.uint8  # no float copy
    x, m = gan._batch()
    assert x.dtype == torch.float32 and float(x.max()) <= 1.0
    assert torch.equal(x, x * m)  # missing entries never reach training
    gan.train()
    assert all(np.isfinite(v) for k, v in gan.history[-1].items() if k.startswith("loss"))
    assert MisGAN.load(tmp_path / "run").step == 2
