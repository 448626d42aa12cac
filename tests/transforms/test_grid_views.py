"""PEAC grid views: exact token correspondence on a cell-ID image, jitter invariance, the legacy masks,
the resize-then-centre-crop, and the POPAR patch shuffle."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from semantic_genesis.errors import ConfigError, DataError
from semantic_genesis.transforms import build_preset
from semantic_genesis.io.radiograph_folder import resize_and_centre_crop
from semantic_genesis.transforms.grid_views import GridViewSampler, cell_id_image, overlap_masks
from semantic_genesis.transforms.popar import from_patches, popar_corrupt, shuffle_patches, to_patches

OFFSETS = list(itertools.product(range(5), repeat=2))


def token_cells(view: torch.Tensor, cell: int) -> torch.Tensor:
    """The image cell each token of a cell-ID crop covers: the value at each cell's top-left pixel."""
    return view[0, ::cell, ::cell].reshape(-1)


def crops(sampler, image, o1, o2, jitter=(0, 0)):
    j = torch.tensor([jitter])
    return (sampler.crop(image[None], torch.tensor([o1]), j)[0], sampler.crop(image[None], torch.tensor([o2]), j)[0])


@pytest.mark.parametrize("g,k,m,size", [(8, 8, 4, 104), (32, 14, 4, 608)])
def test_sampler_sizes(g, k, m, size):
    sampler = GridViewSampler(g, k, m)
    assert sampler.image_size == size and sampler.view_size == k * g and sampler.num_tokens == k * k
    views = sampler(torch.rand(2, 1, size, size), torch.Generator().manual_seed(0))
    assert views.view1.shape == views.view2.shape == (2, 1, k * g, k * g)
    assert views.offsets1.min() >= 0 and views.offsets1.max() <= m and views.jitter.max() < g
    with pytest.raises(DataError, match=rf"\(B, C, {size}, {size}\)"):
        sampler(torch.rand(2, 1, size - 1, size - 1), torch.Generator())


def test_every_offset_pair_selects_the_same_cells_exactly():
    """C.4 item 1: all 5^4 offset pairs, tiny setting: same cells, same order, (k-|dr|)(k-|dc|) tokens."""
    g, k, m = 8, 8, 4
    sampler = GridViewSampler(g, k, m, jitter=False)
    image = cell_id_image(k + m + 1, g)
    counts = []
    for o1, o2 in itertools.product(OFFSETS, OFFSETS):
        v1, v2 = crops(sampler, image, o1, o2)
        m1, m2 = overlap_masks(o1, o2, k)
        cells1, cells2 = token_cells(v1, g)[m1], token_cells(v2, g)[m2]
        assert torch.equal(cells1, cells2), (o1, o2)
        expected = (k - abs(o1[0] - o2[0])) * (k - abs(o1[1] - o2[1]))
        assert int(m1.sum()) == int(m2.sum()) == expected
        # no shared cell is left out: the unselected tokens of view 1 are not in view 2
        assert not set(token_cells(v1, g)[~m1].tolist()) & set(token_cells(v2, g).tolist())
        counts.append(expected)
    assert min(counts) == (k - m) ** 2 and max(counts) == k * k


def test_paper_setting_offsets_match_exactly_after_jitter():
    """C.4 items 1-2 at g=32, k=14: every offset pair, each with a random shared jitter."""
    g, k, m = 32, 14, 4
    sampler = GridViewSampler(g, k, m)
    image = cell_id_image(k + m + 1, g)
    rng = torch.Generator().manual_seed(3)
    for o1, o2 in itertools.product(OFFSETS, OFFSETS):
        jitter = tuple(torch.randint(0, g, (2,), generator=rng).tolist())
        v1, v2 = crops(sampler, image, o1, o2, jitter)
        m1, m2 = overlap_masks(o1, o2, k)
        # with a jitter the cell a token covers is read at its own top-left pixel, which may sit in a
        # neighbour image cell; both views are shifted alike, so the values still agree exactly
        assert torch.equal(v1[0, ::g, ::g].reshape(-1)[m1], v2[0, ::g, ::g].reshape(-1)[m2])
        assert torch.equal(to_patches(v1[None], g)[0, m1], to_patches(v2[None], g)[0, m2])


def test_sampled_batches_correspond_with_batched_masks():
    """C.4 item 2 through the sampler's own draws: whole tokens (every pixel of each patch) agree."""
    g, k, m = 8, 8, 4
    sampler = GridViewSampler(g, k, m)
    images = cell_id_image(k + m + 1, g).expand(64, 1, -1, -1).float() + torch.rand(64, 1, 1, 1)
    views = sampler(images, torch.Generator().manual_seed(1))
    assert len({tuple(j) for j in views.jitter.tolist()}) > 10  # the jitter really varies
    m1, m2 = overlap_masks(views.offsets1, views.offsets2, k)
    assert m1.shape == (64, k * k)
    p1, p2 = to_patches(views.view1, g), to_patches(views.view2, g)
    for i in range(64):
        assert torch.equal(p1[i, m1[i]], p2[i, m2[i]])


def test_legacy_transposed_masks_fail_when_row_and_column_shifts_differ():
    """C.4 item 3: the official get_index pairs the right cells only when dr == dc."""
    g, k = 8, 8
    sampler = GridViewSampler(g, k, 4, jitter=False)
    image = cell_id_image(13, g)
    agree, differ = 0, 0
    for o1, o2 in itertools.product(OFFSETS, OFFSETS):
        v1, v2 = crops(sampler, image, o1, o2)
        m1, m2 = overlap_masks(o1, o2, k, legacy_transposed=True)
        same = int(m1.sum()) == int(m2.sum()) and torch.equal(token_cells(v1, g)[m1], token_cells(v2, g)[m2])
        if o1[0] - o2[0] == o1[1] - o2[1]:
            assert same, (o1, o2)
            agree += 1
        else:
            assert not same, (o1, o2)
            differ += 1
    assert agree == 85 and differ == 540  # 85 / 625 = 13.6 %: the share of the official code's random draws that pair correctly


def test_masks_of_single_and_batched_offsets_agree():
    a, b = overlap_masks((1, 3), (4, 0), 8)
    ba, bb = overlap_masks(torch.tensor([[1, 3], [0, 0]]), torch.tensor([[4, 0], [0, 0]]), 8)
    assert torch.equal(ba[0], a) and torch.equal(bb[0], b) and bool(ba[1].all())


def test_sampler_refuses_bad_settings():
    with pytest.raises(ConfigError, match="max_offset"):
        GridViewSampler(8, 4, 4)
    with pytest.raises(ConfigError, match="cell"):
        GridViewSampler(0, 8, 4)


def test_resize_then_centre_crop():
    wide = np.tile(np.arange(300, dtype=np.float32), (200, 1))  # 200 x 300, value = column
    out = resize_and_centre_crop(wide, 104)
    assert out.shape == (104, 104) and out.dtype == np.float32
    # shorter side 200 -> 104, width 300 -> 156; the centre crop keeps columns 26..129 of the resized
    # image, i.e. the middle of the original: the mean column is the original centre (149.5)
    assert abs(float(out.mean()) - 149.5) < 1.0
    small = np.ones((50, 60), np.float32)
    assert resize_and_centre_crop(small, 104).shape == (104, 104)


def test_shuffle_patches_inverse_and_targets():
    """C.4 item 5 (POPAR geometry): position j receives patch perm[j]; argsort(perm) undoes it."""
    g = 8
    x = torch.rand(3, 1, 64, 64, generator=torch.Generator().manual_seed(0))
    assert torch.equal(from_patches(to_patches(x, g)), x)
    perm = torch.stack([torch.randperm(64, generator=torch.Generator().manual_seed(i)) for i in range(3)])
    y = shuffle_patches(x, perm, g)
    px, py = to_patches(x, g), to_patches(y, g)
    for i in range(3):
        for j in (0, 17, 63):
            assert torch.equal(py[i, j], px[i, perm[i, j]])
    assert torch.equal(shuffle_patches(y, perm.argsort(dim=1), g), x)


def test_popar_corruption_branches():
    g = 8
    views = torch.rand(64, 1, 64, 64, generator=torch.Generator().manual_seed(0))
    preset = build_preset("models_genesis", spatial_dims=2, flip_prob=0.0, shuffle_prob=1.0, shuffle_windows=40)
    batch = popar_corrupt(views, g, preset, torch.Generator().manual_seed(1))
    assert torch.equal(batch.target, views)
    assert 20 < int(batch.shuffled.sum()) < 44  # p = 0.5 of 64
    identity = torch.arange(64)
    for i in range(64):
        if batch.shuffled[i]:
            assert sorted(batch.perm[i].tolist()) == list(range(64)) and not torch.equal(batch.perm[i], identity)
            assert torch.equal(batch.input[i], shuffle_patches(views[i:i + 1], batch.perm[i:i + 1], g)[0])
        else:
            assert torch.equal(batch.perm[i], identity)
            assert not torch.equal(batch.input[i], views[i])  # local shuffling always changes the view
    again = popar_corrupt(views, g, preset, torch.Generator().manual_seed(1))
    assert torch.equal(again.input, batch.input) and torch.equal(again.perm, batch.perm)
