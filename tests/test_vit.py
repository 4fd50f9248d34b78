import pytest
import torch

from scenelab.models import MultiScaleViT, VisionTransformer
from scenelab.models.vit import Attention, Block, window_partition, window_unpartition


@pytest.mark.parametrize("hw", [(8, 8), (5, 7), (3, 3), (9, 4)])
def test_window_unpartition_inverts_partition_including_padding(hw):
    x = torch.randn(2, *hw, 6)
    windows, pad_hw = window_partition(x, 4)
    assert pad_hw == (-(-hw[0] // 4) * 4, -(-hw[1] // 4) * 4)
    assert windows.shape == (2 * pad_hw[0] // 4 * pad_hw[1] // 4, 4, 4, 6)
    assert torch.equal(window_unpartition(windows, 4, pad_hw, hw), x)


def test_window_partition_layout_is_row_major_and_zero_padded():
    x = torch.randn(1, 5, 7, 3)
    windows, _ = window_partition(x, 4)  # 2 x 2 windows over the padded 8 x 8 grid
    assert torch.equal(windows[0], x[0, :4, :4])
    assert torch.equal(windows[1, :, :3], x[0, :4, 4:7]) and not windows[1, :, 3].any()
    assert torch.equal(windows[2, :1], x[0, 4:5, :4]) and not windows[2, 1:].any()


def test_sdpa_and_manual_attention_agree():
    attn = Attention(32, num_heads=4)
    x = torch.randn(3, 4, 5, 32)
    fused = attn(x)
    attn.fused = False
    torch.testing.assert_close(attn(x), fused, rtol=1e-5, atol=1e-5)


def test_attention_weights_are_probabilities_that_reproduce_the_output():
    attn = Attention(16, num_heads=2)
    x = torch.randn(2, 3, 3, 16)
    w = attn.weights(x)
    assert w.shape == (2, 2, 9, 9)
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 2, 9))
    v = attn.qkv(x).reshape(2, 9, 3, 2, 8)[:, :, 2].transpose(1, 2)  # (B, h, N, C/h)
    out = attn.proj((w @ v).transpose(1, 2).reshape(2, 3, 3, 16))
    torch.testing.assert_close(out, attn(x), rtol=1e-5, atol=1e-5)


def test_a_window_covering_the_grid_is_global_attention():
    windowed, global_ = Block(32, 4, window_size=6), Block(32, 4, window_size=0)
    global_.load_state_dict(windowed.state_dict())
    x = torch.randn(2, 6, 6, 32)
    torch.testing.assert_close(windowed(x), global_(x))
    torch.testing.assert_close(windowed.attention_weights(x), global_.attention_weights(x))


def test_windowed_attention_is_block_diagonal_over_the_grid():
    block = Block(16, 2, window_size=2)
    x = torch.randn(1, 4, 4, 16)
    maps = block.attention_weights(x)  # (1, 2, 16, 16)
    window = (torch.arange(4)[:, None] // 2 * 2 + torch.arange(4)[None, :] // 2).flatten()
    same = window[:, None] == window[None, :]
    assert not maps[..., ~same].any() and (maps[..., same] > 0).all()
    torch.testing.assert_close(maps.sum(-1), torch.ones(1, 2, 16))
    # Windows change the result: a token ignores the rest of the image.
    global_ = Block(16, 2, window_size=0)
    global_.load_state_dict(block.state_dict())
    assert not torch.allclose(block(x), global_(x))


def test_course_vit_layout():
    vit = VisionTransformer(100)
    assert [b.window_size for b in vit.blocks] == [0, 4, 0, 4]  # global on 0 and 2
    assert vit.pos_embed.shape == (1, 8, 8, 192) and vit.head.in_features == 192
    rates = [b.drop_path.p for b in vit.blocks]
    assert rates[0] == 0 and rates[-1] == pytest.approx(0.1) and rates == sorted(rates)
    assert isinstance(vit.norm, torch.nn.LayerNorm)
    assert isinstance(VisionTransformer(10, head_norm=False).norm, torch.nn.Identity)
    assert VisionTransformer(10, pos_embed=False).pos_embed is None
    with pytest.raises(ValueError, match=r"window_block_indexes \(4,\) must lie in \[0, 4\)"):
        VisionTransformer(10, window_block_indexes=(4,))


def test_position_table_resizes_to_other_inputs_and_stays_put_at_its_own_size():
    vit = VisionTransformer(5, img_size=64, patch_size=16)
    tokens = vit.tokens(torch.zeros(1, 3, 64, 64))
    torch.testing.assert_close(tokens - vit.patch_embed(torch.zeros(1, 3, 64, 64)), vit.pos_embed)
    assert vit.tokens(torch.zeros(1, 3, 128, 96)).shape == (1, 8, 6, 192)


def test_attention_maps_cover_every_block():
    vit = VisionTransformer(5, img_size=64, patch_size=8, embed_dim=32, num_heads=2, depth=4)
    x = torch.rand(2, 3, 64, 64)
    maps = vit.attention_maps(x)
    assert len(maps) == 4 and all(m.shape == (2, 2, 64, 64) for m in maps)
    assert vit.training  # untouched
    # Computed in eval mode, so stochastic depth does not change them.
    for a, b in zip(maps, vit.attention_maps(x), strict=True):
        torch.testing.assert_close(a, b)
    # The last block's input is what the blocks before it produce.
    tokens = vit.eval().tokens(vit.normalize(x))
    for block in vit.blocks[:3]:
        tokens = block(tokens)
    torch.testing.assert_close(maps[3], vit.blocks[3].attention_weights(tokens))


def test_attention_maps_give_each_submodule_its_own_mode_back():
    vit = VisionTransformer(5, img_size=32, patch_size=8, embed_dim=16, num_heads=2, depth=4)
    vit.blocks[0].eval()  # a submodule in its own mode must keep it
    before = [m.training for m in vit.modules()]
    vit.attention_maps(torch.rand(1, 3, 32, 32))
    assert [m.training for m in vit.modules()] == before


def test_multiscale_vit_scales_windows_to_each_branch_grid():
    model = MultiScaleViT(10, img_size=128)
    assert [b.patch_embed.proj.stride[0] for b in model.branches] == [4, 8, 16]
    assert [b.blocks[1].window_size for b in model.branches] == [16, 8, 4]
    branches_are_headless_vits = (
        isinstance(b, VisionTransformer) and isinstance(b.head, torch.nn.Identity)
        for b in model.branches
    )
    assert all(branches_are_headless_vits)
    assert model.head.in_features == 3 * 96
    with pytest.raises(ValueError, match="must each divide the largest"):
        MultiScaleViT(10, patch_sizes=(6, 16))


def test_vit_trains_on_an_easy_task():
    torch.manual_seed(0)
    x = torch.rand(32, 3, 32, 32)
    y = (x[:, 0].mean((1, 2)) > x[:, 2].mean((1, 2))).long()  # red vs blue
    vit = VisionTransformer(
        2, img_size=32, patch_size=8, embed_dim=32, num_heads=2, depth=2, window_block_indexes=(1,)
    )
    opt = torch.optim.AdamW(vit.parameters(), lr=3e-3)
    for _ in range(60):
        loss = torch.nn.functional.cross_entropy(vit(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.2
