"""The baselines' recipes and losses: Rubik's cube scrambling, patch swapping, context-encoder masking,
and the semantics add-on's composition (tiny tensors; no training here, see test_registry.py)."""

from __future__ import annotations

import itertools

import pytest
import torch

from semantic_genesis import methods
from semantic_genesis.config import load_config
from semantic_genesis.errors import ConfigError, DataError
from semantic_genesis.transforms.context_mask import ContextInpaintRecipe, context_mask
from semantic_genesis.transforms.patch_swap import apply_index, patch_swap, sample_swap_index
from semantic_genesis.transforms.rubik import (
    RubikRecipe,
    hamming_permutations,
    merge_subcubes,
    min_hamming_distance,
    scramble,
    split_subcubes,
    unscramble,
)


def _cubes(b=3, shape=(16, 16, 8), seed=0):
    return torch.rand((b, 1, *shape), generator=torch.Generator().manual_seed(seed))


# -- Rubik's cube -------------------------------------------------------------------------------------
def test_subcube_split_is_the_octant_grid():
    x = _cubes(2, (4, 6, 2))
    blocks = split_subcubes(x)
    assert blocks.shape == (2, 8, 1, 2, 3, 1)
    for i, k, l in itertools.product(range(2), repeat=3):
        expected = x[:, :, 2 * i:2 * i + 2, 3 * k:3 * k + 3, l:l + 1]
        assert torch.equal(blocks[:, 4 * i + 2 * k + l], expected)
    assert torch.equal(merge_subcubes(blocks), x)


def test_permutation_set_is_far_apart_and_seeded():
    perms = hamming_permutations(10, seed=0)
    assert perms.shape == (10, 8)
    assert all(sorted(p.tolist()) == list(range(8)) for p in perms)
    assert len({tuple(p.tolist()) for p in perms}) == 10
    assert torch.equal(perms, hamming_permutations(10, seed=0))
    assert not torch.equal(perms, hamming_permutations(10, seed=1))
    # greedy max-min: 10 permutations of 8 can be 7 apart; random ones are much closer
    assert min_hamming_distance(perms) >= 7
    random = torch.stack([torch.randperm(8, generator=torch.Generator().manual_seed(s)) for s in range(10)])
    assert min_hamming_distance(random) < min_hamming_distance(perms)
    assert min_hamming_distance(hamming_permutations(100)) >= 5
    with pytest.raises(ConfigError, match="num_permutations"):
        hamming_permutations(0)


def test_rubik_labels_restore_the_cube_exactly():
    recipe = RubikRecipe(num_permutations=10, rotation_prob=0.5)
    x = _cubes(16, (8, 8, 4))
    g = torch.Generator().manual_seed(3)
    scrambled, labels, rotations = recipe(x, g)
    assert scrambled.shape == x.shape and labels.shape == (16,) and rotations.shape == (16, 8)
    assert labels.dtype == torch.int64 and 0 <= labels.min() and labels.max() < 10
    assert set(rotations.unique().tolist()) <= {0.0, 1.0}
    assert 0.25 < rotations.mean() < 0.75
    order = recipe.permutations[labels]
    assert torch.equal(unscramble(scrambled, order, rotations), x)  # inverse permutation + un-rotation
    assert not torch.equal(scrambled, x)
    # the arranged sub-cube at grid position j is original sub-cube order[j], rotated 180 deg in (X, Y)
    b, j = 0, 5
    original = split_subcubes(x)[b, order[b, j]]
    arranged = split_subcubes(scrambled)[b, j]
    expected = torch.rot90(original, 2, dims=(1, 2)) if rotations[b, j] else original
    assert torch.equal(arranged, expected)
    # a wrong label does not restore it
    assert not torch.equal(unscramble(scrambled, recipe.permutations[(labels + 1) % 10], rotations), x)


def test_rubik_rejects_odd_or_2d_input():
    with pytest.raises(DataError, match="even"):
        scramble(_cubes(1, (5, 4, 4)), torch.arange(8)[None], torch.zeros(1, 8))
    with pytest.raises(DataError, match="3D batch"):
        RubikRecipe(4)(torch.rand(1, 1, 8, 8), torch.Generator())


def test_rubik_network_shapes_and_encoder_keys():
    from semantic_genesis.methods.rubiks_cube import RubiksCubeNet3D

    net = RubiksCubeNet3D(width=0.125, num_permutations=10)
    out = net(_cubes(2, (32, 32, 16)))
    assert out.permutation.shape == (2, 10) and out.rotation.shape == (2, 8)
    keys = set(net.state_dict())
    from semantic_genesis.models import UNet3D

    encoder = {k for k in UNet3D(width=0.125).state_dict() if k.startswith("down_tr")}
    assert encoder <= keys
    # siamese: each sub-cube passes the encoder on its own (instance norm, so no batch statistics
    # couple them): changing sub-cube 7 changes only the features of grid position 7
    net = RubiksCubeNet3D(width=0.125, num_permutations=10, norm="instance").eval()
    x = _cubes(1, (32, 32, 16))
    y = x.clone()
    y[:, :, 16:, 16:, 8:] = torch.rand(1, 1, 16, 16, 8, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        fx, fy = net.features(x), net.features(y)
    c = net.bottleneck_channels
    assert fx.shape == (1, 8 * c)
    assert torch.allclose(fx[:, : 7 * c], fy[:, : 7 * c], atol=1e-6)
    assert not torch.allclose(fx[:, 7 * c:], fy[:, 7 * c:], atol=1e-4)
    with pytest.raises(DataError):
        net(_cubes(1, (16, 16, 8)))


# -- patch shuffling ----------------------------------------------------------------------------------
def test_patch_swap_is_restored_by_its_target_and_index():
    recipe = methods.get("patch_shuffling").build_recipe(load_config(None, ["transforms.overrides.swaps=6"]))
    x = _cubes(4, (16, 16, 8))
    inputs, target = recipe(x, torch.Generator().manual_seed(0))
    assert torch.equal(target, x) and target is not x
    # same draw with the index: the swap is an involution, so the index restores the original exactly
    out, index = patch_swap(x, torch.Generator().manual_seed(0), swaps=6, return_index=True)
    assert torch.equal(out, inputs)
    assert torch.equal(apply_index(out, index), x)
    assert torch.equal(index.sort(dim=1).values, torch.arange(index.shape[1]).expand_as(index))
    # 6 pairs = 12 patches of 2x2x1: exactly 48 voxels per sample moved, the histogram is unchanged
    moved = (index != torch.arange(index.shape[1])).sum(1)
    assert moved.tolist() == [48] * 4
    assert torch.equal(inputs.flatten(1).sort(1).values, x.flatten(1).sort(1).values)


def test_patch_swap_patches_do_not_overlap_and_are_whole_patches():
    g = torch.Generator().manual_seed(1)
    index = sample_swap_index(g, 8, (12, 12, 6), (3, 3, 2), 7)
    ids = torch.arange(12 * 12 * 6).reshape(12, 12, 6)
    for row in index:
        moved = (row != ids.flatten()).reshape(12, 12, 6)
        assert int(moved.sum()) == 14 * 18  # 14 disjoint patches of 18 voxels
        # each moved voxel's source lies in a patch displaced by the same vector as its patch-mates
        src = torch.stack(torch.unravel_index(row, (12, 12, 6)), -1).reshape(12, 12, 6, 3)
        here = torch.stack(torch.meshgrid(*[torch.arange(s) for s in (12, 12, 6)], indexing="ij"), -1)
        shifts, counts = torch.unique((src - here)[moved], dim=0, return_counts=True)
        assert len(shifts) <= 14 and all(int(n) % 18 == 0 for n in counts)  # whole patches move together
        assert torch.equal(row[row], ids.flatten())  # a swap is its own inverse


def test_patch_swap_works_in_2d_and_checks_its_settings():
    x = torch.rand(2, 1, 16, 16)
    assert patch_swap(x, torch.Generator().manual_seed(0), swaps=4, spatial_dims=2).shape == x.shape
    with pytest.raises(ConfigError, match="non-overlapping"):
        patch_swap(x, torch.Generator(), swaps=40, patch_size=(4, 4), spatial_dims=2)
    with pytest.raises(ConfigError, match="axes"):
        patch_swap(x, torch.Generator(), patch_size=(4, 4, 2), spatial_dims=2)
    with pytest.raises(ConfigError, match="unknown transforms.overrides key.*swap"):
        methods.get("patch_shuffling").build_recipe(load_config(None, ["transforms.overrides.swap=3"]))


# -- in-painting --------------------------------------------------------------------------------------
def test_inpainting_mask_covers_exactly_the_corrupted_voxels():
    recipe = ContextInpaintRecipe(min_windows=1, max_windows=3, size_fraction=(0.25, 0.5), fill="mean")
    x = _cubes(6, (16, 16, 8))
    inputs, target, mask = recipe.sample(x, torch.Generator().manual_seed(0))
    assert torch.equal(target, x) and mask.shape == (6, 1, 16, 16, 8) and mask.dtype == torch.bool
    full = mask.expand_as(x)
    assert torch.equal(inputs[~full], x[~full])
    assert torch.equal(full, inputs != x)  # continuous data: every dropped voxel changed
    means = x.mean(dim=(1, 2, 3, 4))
    for b in range(6):
        assert torch.allclose(inputs[b][full[b]], means[b].expand(int(full[b].sum())))
        frac = full[b].float().mean()
        assert 1 / 64 <= frac <= 1.0  # at least one box of >= 4x4x2 voxels
    zero, m0 = context_mask(x, torch.Generator().manual_seed(0), fill="zero")
    assert torch.equal(m0, mask) and torch.all(zero[m0.expand_as(x)] == 0)
    with pytest.raises(ConfigError, match="fill"):
        ContextInpaintRecipe(fill="blue")


def test_inpainting_loss_options_are_checked():
    with pytest.raises(ConfigError, match="inside_weight"):
        methods.get("inpainting")(load_config(None, ["method.name=inpainting", "method.options.inside_weight=-1"]))
    with pytest.raises(ConfigError, match="unknown config key method.options.wieght; valid keys of method.options: "
                                          "inside_weight, outside_weight"):
        methods.get("inpainting")(load_config(None, ["method.name=inpainting", "method.options.wieght=1"]))


def test_autoencoder_target_is_the_input():
    recipe = methods.get("autoencoder").build_recipe(load_config(None, []))
    x = _cubes(2)
    inputs, target = recipe(x)
    assert torch.equal(inputs, x) and torch.equal(target, x) and inputs is not x


# -- the semantics add-on -----------------------------------------------------------------------------
@pytest.mark.parametrize("variant, plain", [("semantic_inpainting", "inpainting"), ("semantic_patch_shuffling", "patch_shuffling")])
def test_semantic_variant_uses_the_plain_methods_recipe(variant, plain):
    from semantic_genesis.methods.semantic_genesis import SemanticAddon

    cls = methods.get(variant)
    assert issubclass(cls, SemanticAddon) and cls.restoration is methods.get(plain)
    assert cls.restore and cls.classify
    cfg = load_config(None, [f"method.name={variant}"])
    method = cls(cfg)
    x = _cubes(3)
    got = method.make_pair(x, torch.Generator().manual_seed(5))
    want = methods.get(plain).build_recipe(cfg)(x, torch.Generator().manual_seed(5))
    assert all(torch.equal(a, b) for a, b in zip(got, want))
    assert not torch.equal(got[0], got[1])


def test_semantic_models_genesis_is_semantic_genesis():
    sg, smg = methods.get("semantic_genesis"), methods.get("semantic_models_genesis")
    assert issubclass(smg, sg) and smg.restoration_preset == sg.restoration_preset
    assert smg._step is sg._step and smg.build_model is sg.build_model


def test_rubiks_cube_checks_its_options_and_cube_size(tmp_path):
    with pytest.raises(ConfigError, match="unknown config key method.options.perms; valid keys of method.options: "
                                          "num_permutations, "):
        methods.get("rubiks_cube")(load_config(None, ["method.name=rubiks_cube", "method.options.perms=3"]))
    from semantic_genesis.io.shards import ShardWriter

    writer = ShardWriter(tmp_path / "c", "cubes", (1, 16, 16, 8))
    writer.add_unit("a", _cubes(2).numpy(), [{}, {}], split="train")
    writer.finish()
    method = methods.get("rubiks_cube")(load_config(None, ["method.name=rubiks_cube", f"data={tmp_path / 'c'}"]))
    with pytest.raises(ConfigError, match="multiples of 16"):
        method.build_datasets()
