import numpy as np
import pytest
import torch
from PIL import Image

from vipaint_pl.errors import ImageReadError, MaskError, ShapeError
from vipaint_pl.image_io import list_images, load_image, save_grid, save_image
from vipaint_pl.masks import (
    box_mask,
    extreme_mask,
    half_plane_mask,
    make_mask,
    random_mask,
    read_mask,
    small_mask,
    write_mask,
)
from vipaint_pl.queries import make_query


@pytest.mark.parametrize("hole_range", [(0.3, 0.7), (0.4, 0.8)])
def test_random_masks_stay_in_hole_range(hole_range):
    rng = np.random.default_rng(0)
    ratios = [1 - float(random_mask(32, 32, hole_range, rng).mean()) for _ in range(200)]
    assert min(ratios) >= hole_range[0] and max(ratios) <= hole_range[1]
    assert np.std(ratios) > 0.02  # not a constant mask


def test_small_masks_hide_at_most_20_percent():
    rng = np.random.default_rng(1)
    ratios = [1 - float(small_mask(32, 32, rng).mean()) for _ in range(200)]
    assert 0 < min(ratios) and max(ratios) <= 0.2


def test_masks_are_seeded_and_binary():
    a, b = random_mask(16, 16, seed=3), random_mask(16, 16, seed=3)
    assert torch.equal(a, b) and a.shape == (1, 16, 16)
    assert set(torch.unique(a).tolist()) <= {0.0, 1.0}
    assert not torch.equal(half_plane_mask(16, 16, seed=1), half_plane_mask(16, 16, seed=2))


def test_structured_masks():
    assert abs(1 - float(half_plane_mask(64, 64, seed=0).mean()) - 0.5) < 0.05
    assert float(box_mask(16, 16).mean()) == pytest.approx(0.75)
    assert float(extreme_mask(16, 16).mean()) == pytest.approx(0.25)
    with pytest.raises(ValueError, match="unknown mask kind"):
        make_mask("circle", 8, 8)


def test_mask_file_roundtrip_and_convention(tmp_path):
    m = random_mask(16, 16, seed=0)
    write_mask(m, tmp_path / "m.png")
    assert torch.equal(read_mask(tmp_path / "m.png"), m)
    # White = missing by default: an all-black file is fully observed.
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "black.png")
    assert float(read_mask(tmp_path / "black.png").mean()) == 1.0
    assert float(read_mask(tmp_path / "m.png", missing="black").mean()) == pytest.approx(1 - float(m.mean()))


def test_mask_file_errors(tmp_path):
    Image.fromarray(np.full((4, 4), 128, np.uint8)).save(tmp_path / "grey.png")
    with pytest.raises(MaskError, match="not binary"):
        read_mask(tmp_path / "grey.png")
    assert read_mask(tmp_path / "grey.png", threshold=0.6).mean() == 1.0
    Image.fromarray(np.full((4, 4), 255, np.uint8)).save(tmp_path / "white.png")
    with pytest.raises(MaskError, match="no observed pixel"):
        read_mask(tmp_path / "white.png")
    (tmp_path / "junk.png").write_bytes(b"not an image")
    with pytest.raises(ImageReadError, match="junk.png"):
        read_mask(tmp_path / "junk.png")


def test_image_roundtrip_and_resize(tmp_path):
    x = torch.rand(3, 8, 8) * 2 - 1
    save_image(x, tmp_path / "x.png")
    back = load_image(tmp_path / "x.png")
    assert back.shape == (3, 8, 8) and (back - x).abs().max() < 1 / 127
    assert load_image(tmp_path / "x.png", size=4).shape == (3, 4, 4)
    assert load_image(tmp_path / "x.png", channels=1).shape == (1, 8, 8)
    save_grid([[x, x[:1]], [x]], tmp_path / "grid.png")
    assert Image.open(tmp_path / "grid.png").size == (8 * 2 + 2, 8 * 2 + 2)
    assert list_images(tmp_path)[0].name == "grid.png"


def test_image_errors(tmp_path):
    with pytest.raises(ImageReadError, match="missing.png"):
        load_image(tmp_path / "missing.png")
    with pytest.raises(ImageReadError, match="does not exist"):
        list_images(tmp_path / "nope")


def test_query_validation():
    img, mask = torch.zeros(3, 8, 8), torch.ones(1, 8, 8)
    q = make_query("a", img, mask, channels=3)
    assert q.observed.shape == (3, 8, 8)
    with pytest.raises(ShapeError, match="does not match image size"):
        make_query("a", img, torch.ones(1, 4, 4))
    with pytest.raises(MaskError, match="binary"):
        make_query("a", img, torch.full((1, 8, 8), 0.3))
    with pytest.raises(MaskError, match="no observed pixel"):
        make_query("a", img, torch.zeros(1, 8, 8))
    with pytest.raises(ShapeError, match="expects 1"):
        make_query("a", img, mask, channels=1)
    bad = img.clone()
    bad[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        make_query("a", bad, mask)
    with pytest.raises(ShapeError, match=r"\[-1, 1\]"):
        make_query("a", img + 5, mask)
