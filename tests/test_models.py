import pytest
import torch
from torch import nn

from scenelab.checkpoint import CheckpointError, load_model_state
from scenelab.cli import main
from scenelab.config import ModelConfig, OptimConfig
from scenelab.models import (
    MODELS,
    ModelSpec,
    Normalize,
    ResNetCPU,
    SimpleNet,
    VisionTransformer,
    build_model,
    count_flops,
    count_parameters,
    model_spec,
    optim_defaults,
    resolve_model_config,
)
from scenelab.models.resnet import Bottleneck
from scenelab.models.summary import layer_rows
from scenelab.optim import param_groups

CNNS = ["simplenet", "resnet_bn", "resnet_cpu"]  # the models built with conv_layer=


def test_course_parameter_counts():
    assert count_parameters(SimpleNet(num_classes=100)) == 365_028
    assert count_parameters(build_model(ModelConfig(model="vit"), 100)) == 1_959_076  # ~1.96M
    assert 1e6 < count_parameters(build_model(ModelConfig(model="resnet_bn"), 100)) < 2e6


@pytest.mark.parametrize("name", list(MODELS))
def test_registry_models_classify_64_and_128_pixel_images(name):
    model = build_model(ModelConfig(model=name), num_classes=7, image_size=128)
    for size in (64, 128):
        out = model(torch.rand(2, 3, size, size))
        assert out.shape == (2, 7) and torch.isfinite(out).all()


@pytest.mark.parametrize("name", list(MODELS))
def test_every_parameter_receives_a_gradient(name):
    model = build_model(ModelConfig(model=name), num_classes=5, image_size=64).eval()
    model(torch.rand(2, 3, 64, 64)).sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()]
    assert not missing


@pytest.mark.parametrize("name", list(MODELS))
def test_state_dict_round_trip_gives_the_same_model(name):
    a = build_model(ModelConfig(model=name), num_classes=5, image_size=64).eval()
    torch.manual_seed(1)
    b = build_model(ModelConfig(model=name), num_classes=5, image_size=64).eval()
    b.load_state_dict(a.state_dict())
    x = torch.rand(2, 3, 64, 64)
    torch.testing.assert_close(b(x), a(x), rtol=0, atol=0)


@pytest.mark.parametrize("name", CNNS)
def test_unfold_conv_gives_the_native_model_output(name):
    native = build_model(ModelConfig(model=name), num_classes=5).double().eval()
    unfold = build_model(ModelConfig(model=name, conv="unfold"), num_classes=5).double().eval()
    unfold.load_state_dict(native.state_dict())
    x = torch.rand(2, 3, 64, 64, dtype=torch.float64)
    torch.testing.assert_close(unfold(x), native(x))


@pytest.mark.parametrize("name", CNNS)
def test_conv_layer_is_injected_everywhere(name):
    class MarkedConv(nn.Conv2d):
        pass

    model = MODELS[name].build(num_classes=3, conv_layer=MarkedConv)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert convs and all(isinstance(m, MarkedConv) for m in convs)
    # Same parameters and state-dict keys as the default: weights load across.
    MODELS[name].build(num_classes=3).load_state_dict(model.state_dict())


def test_resnet_bn_has_batchnorm_after_every_conv_and_configurable_stages():
    model = build_model(ModelConfig(model="resnet_bn", stage_widths=(32,), stage_blocks=(2,)), 4)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(convs) == len(norms) == 1 + 3 * 2 + 1 + 3  # stem, stage, shortcut, final
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 4)
    with pytest.raises(ValueError, match="one width and one block count per stage"):
        build_model(ModelConfig(model="resnet_bn", stage_widths=(32, 64), stage_blocks=(2,)), 4)


def test_resnet_cpu_default_size_and_where_it_downsamples():
    model = build_model(ModelConfig(model="resnet_cpu"), 100)
    assert count_parameters(model) == 1_233_540
    features = model.stages(model.stem(model.normalize(torch.rand(2, 3, 64, 64))))
    assert features.shape == (2, 256, 4, 4)  # stem /2, then three stages that halve
    assert model.stem(torch.rand(2, 3, 64, 64)).shape == (2, 32, 32, 32)
    assert [
        block(torch.rand(2, block.residual[0].in_channels, 32, 32)).shape[-1]
        for block in model.stages
    ] == [16, 16, 16]  # each stage halves its input
    assert ResNetCPU(3, stem_stride=1).stem(torch.rand(2, 3, 64, 64)).shape == (2, 32, 64, 64)
    with pytest.raises(ValueError, match="stem_stride must be 1 or 2"):
        ResNetCPU(3, stem_stride=4)


@pytest.mark.parametrize("size", [40, 56, 72, 33])
def test_resnet_cpu_takes_sizes_that_do_not_halve_evenly(size):
    # the shortcut's average pool rounds up as the strided conv beside it does (40 -> 20 ->
    # 10 -> 5 -> 3), so progressive resizing can train at any size
    model = build_model(ModelConfig(model="resnet_cpu"), 5)
    assert model(torch.rand(2, 3, size, size)).shape == (2, 5)


def test_resnet_cpu_builds_basic_or_bottleneck_blocks_from_expansion():
    def convs(expansion: int) -> list[nn.Conv2d]:
        arch = {"stage_widths": (32, 64), "stage_blocks": (2, 1), "expansion": expansion}
        model = build_model(ModelConfig(model="resnet_cpu", **arch), 4)
        assert model(torch.rand(2, 3, 32, 32)).shape == (2, 4)
        return [m for m in model.modules() if isinstance(m, nn.Conv2d)]

    # stem 1, three blocks of 2 (basic) or 3 (bottleneck) convs, a 1x1 shortcut in each stage's
    # first block (16 -> 32 channels and /2; 32 -> 64 and /2)
    assert [m.kernel_size for m in convs(1)].count((3, 3)) == 1 + 3 * 2
    assert len(convs(1)) == 1 + 3 * 2 + 2
    assert len(convs(2)) == 1 + 3 * 3 + 2
    with pytest.raises(ValueError, match="expansion must be 1"):
        build_model(ModelConfig(model="resnet_cpu", expansion=0), 4)


def test_resnet_cpu_final_width_adds_a_last_1x1_conv():
    model = build_model(ModelConfig(model="resnet_cpu", final_width=128), 4)
    assert model.head.in_features == 128 and model(torch.rand(2, 3, 64, 64)).shape == (2, 4)
    assert isinstance(build_model(ModelConfig(model="resnet_cpu"), 4).final, nn.Identity)


def test_resnet_cpu_is_listed_by_scenelab_models(capsys):
    from scenelab.cli import main

    assert main(["models", "--image-size", "64"]) == 0
    line = next(row for row in capsys.readouterr().out.splitlines() if row.startswith("resnet_cpu"))
    assert "1,233,540" in line and MODELS["resnet_cpu"].description in line


def test_normalize_is_the_first_layer_with_persistent_statistics():
    model = SimpleNet(num_classes=3)
    assert {"normalize.mean", "normalize.std"} <= model.state_dict().keys()
    x = torch.rand(1, 3, 4, 4)
    expected = (x - torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)) / torch.tensor(
        [0.229, 0.224, 0.225]
    ).view(3, 1, 1)
    assert torch.allclose(Normalize()(x), expected)


def test_unknown_model_or_conv_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown model 'nope'; choose from simplenet, vit"):
        build_model(ModelConfig(model="nope"), 3)
    with pytest.raises(ValueError, match="unknown conv 'nope'"):
        build_model(ModelConfig(conv="nope"), 3)


def test_settings_that_do_not_apply_to_a_model_are_refused():
    with pytest.raises(ValueError, match="--depth does not apply to simplenet; .*: vit, msvit"):
        build_model(ModelConfig(depth=6), 3)
    with pytest.raises(ValueError, match="--conv does not apply to vit; .*: simplenet, resnet_bn"):
        build_model(ModelConfig(model="vit", conv="unfold"), 3)
    with pytest.raises(ValueError, match="--pretrained does not apply to vit; .*: resnet18"):
        build_model(ModelConfig(model="vit", pretrained=True), 3)
    with pytest.raises(ValueError, match="--freeze-backbone does not apply to simplenet"):
        build_model(ModelConfig(freeze_backbone=True), 3)


def test_resolved_config_names_the_model_defaults():
    cfg = resolve_model_config(ModelConfig(model="vit", depth=6))
    assert cfg.depth == 6 and cfg.embed_dim == 192 and cfg.window_block_indexes == (1, 3)
    assert cfg.stage_widths is None  # resnet_bn's, not the ViT's
    assert resolve_model_config(ModelConfig()) == ModelConfig()


def test_checkpoint_of_another_model_is_a_clear_error_naming_both():
    vit = build_model(ModelConfig(model="vit"), 3, 64)
    state = {"model": vit.state_dict(), "model_name": "vit", "classes": ["a", "b", "c"]}
    with pytest.raises(CheckpointError, match="ck.pt holds a 'vit' model, not 'simplenet'"):
        load_model_state(SimpleNet(3), state, "simplenet", "ck.pt")
    deeper = build_model(ModelConfig(model="vit", depth=5), 3, 64)
    with pytest.raises(CheckpointError, match=r"ck.pt \(vit, 3 classes\) does not fit this vit"):
        load_model_state(deeper, state, "vit", "ck.pt")


def test_vits_default_to_the_course_recipe_and_cnns_to_sgd():
    assert optim_defaults(ModelConfig(model="vit")) == {
        "optimizer": "adamw",
        "lr": 0.01,
        "weight_decay": 0.05,
        "clip_grad": 1.0,
    }
    assert optim_defaults(ModelConfig(model="msvit"))["optimizer"] == "adamw"
    assert optim_defaults(ModelConfig(model="resnet_bn")) == {}
    assert optim_defaults(ModelConfig(model="resnet18", pretrained=True))["backbone_lr_scale"] < 1


@pytest.mark.parametrize("name", ["resnet18", "tv:resnet50"])
def test_torchvision_models_fine_tune_the_backbone_slower_from_pretrained_weights(name):
    scratch = {"lr": 0.01, "weight_decay": 1e-4, "backbone_lr_scale": 1.0}
    assert optim_defaults(ModelConfig(model=name)) == scratch
    for cfg in (ModelConfig(model=name, pretrained=True), ModelConfig(model=name, weights="w.pt")):
        assert optim_defaults(cfg) == scratch | {"backbone_lr_scale": 0.1}


def test_every_model_has_one_spec_and_its_defaults_are_copies():
    assert all(isinstance(spec, ModelSpec) and spec.description for spec in MODELS.values())
    assert [n for n, spec in MODELS.items() if spec.pretrained is not None] == ["resnet18"]
    assert model_spec("tv:resnet50").pretrained.imagenet == "resnet50"
    optim_defaults(ModelConfig(model="vit"))["lr"] = 1.0  # the caller's copy, not the spec's
    assert optim_defaults(ModelConfig(model="vit"))["lr"] == 0.01


def test_weights_flags_name_the_models_with_pretrained_weights():
    refusal = "--weights does not apply to msvit; it applies to: resnet18$"
    with pytest.raises(ValueError, match=refusal):
        build_model(ModelConfig(model="msvit", weights="w.pt"), 3)
    with pytest.raises(ValueError, match="--depth does not apply to resnet18"):  # arch fields first
        resolve_model_config(ModelConfig(model="resnet18", depth=3, pretrained=True))


def test_resnet_bn_ends_with_simplenets_block_as_the_first_report_or_a_bottleneck():
    model = build_model(ModelConfig(model="resnet_bn"), 100, 64)
    final = [
        (m.in_channels, m.out_channels, m.kernel_size)
        for m in model.final.modules()
        if isinstance(m, nn.Conv2d)
    ]
    assert final == [(256, 128, (1, 1)), (128, 128, (3, 3)), (128, 512, (1, 1))]
    assert not isinstance(model.final, Bottleneck)  # no shortcut
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.final.modules()) == 3
    residual = build_model(ModelConfig(model="resnet_bn", final_block="bottleneck"), 100, 64)
    assert isinstance(residual.final, Bottleneck) and count_parameters(residual) == 1_805_988
    with pytest.raises(ValueError, match="final_block 'plain': choose simplenet"):
        build_model(ModelConfig(model="resnet_bn", final_block="plain"), 100, 64)


def test_decay_all_puts_every_parameter_under_weight_decay():
    model = build_model(ModelConfig(model="msvit"), 3, 64)
    groups = param_groups(model, OptimConfig(weight_decay=0.05, decay_all=True))
    assert all(g["weight_decay"] == 0.05 for g in groups)
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))


def test_position_embeddings_norms_and_biases_get_no_weight_decay():
    model = build_model(ModelConfig(model="msvit"), 3, 64)
    groups = param_groups(model, OptimConfig(weight_decay=0.05))
    no_decay = {id(p) for g in groups if g["weight_decay"] == 0 for p in g["params"]}
    names = {n for n, p in model.named_parameters() if id(p) in no_decay}
    assert {f"branches.{i}.pos_embed" for i in range(3)} <= names
    assert all(n.endswith(("bias", "pos_embed")) or ".norm" in n for n in names)
    decayed = {n for n, _ in model.named_parameters()} - names
    assert "head.weight" in decayed and "branches.0.blocks.0.attn.qkv.weight" in decayed


def test_backbone_lr_scale_applies_to_all_but_the_head():
    model = SimpleNet(3)
    groups = param_groups(model, OptimConfig(lr=0.1, backbone_lr_scale=0.1))
    head = {id(p) for p in model.head.parameters()}
    for g in groups:
        in_head = {id(p) in head for p in g["params"]}
        assert len(in_head) == 1
        assert g["lr"] == pytest.approx(0.1 if in_head == {True} else 0.01)
    assert groups[0]["lr"] == 0.1  # the head first: train/lr logs the peak lr's schedule


def test_flop_count_matches_the_formula():
    conv = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1))
    assert count_flops(conv, 16) == 2 * (3 * 9) * 8 * 16 * 16
    # A global-attention ViT: patch embedding, per block qkv + q k^T + attn v + proj + MLP, head.
    D, N, P, C = 32, 4 * 4, 8, 10
    arch = {"patch_size": P, "embed_dim": D, "depth": 2, "num_heads": 2}
    vit = VisionTransformer(C, img_size=32, window_block_indexes=(), **arch)
    block = 2 * N * D * 3 * D + 2 * N * N * D * 2 + 2 * N * D * D + 2 * N * D * 4 * D * 2
    assert count_flops(vit, 32) == 2 * 3 * P * P * D * N + 2 * block + 2 * D * C
    assert all(m.attn.fused for m in vit.blocks)  # restored after counting


def test_flop_count_gives_every_submodule_its_mode_back():
    model = build_model(ModelConfig(model="resnet_bn"), 3).train()
    model.head.eval()
    modes = [m.training for m in model.modules()]
    count_flops(model, 32)
    assert [m.training for m in model.modules()] == modes


def test_layer_rows_give_every_layers_output_shape_and_parameters():
    model = build_model(ModelConfig(model="simplenet"), 100, 128)
    rows = {r.name: r for r in layer_rows(model, 128)}
    assert rows["features.0"].output == (64, 64, 64) and rows["features.0"].params == 9_472
    assert rows["features.9"].output == (256, 16, 16)  # the second max pool
    assert rows["head"].output == (100,) and rows["head"].kind == "Linear"
    assert sum(r.params for r in rows.values()) == count_parameters(model)
    vit = build_model(ModelConfig(model="vit"), 10, 64)
    assert sum(r.params for r in layer_rows(vit, 64)) < count_parameters(vit)  # + pos_embed


def test_models_show_prints_the_layer_table(capsys):
    assert main(["models", "--show", "resnet_bn", "--image-size", "64"]) == 0
    out = capsys.readouterr().out
    assert "final.0" in out and "128 x 8 x 8" in out and "BatchNorm2d" in out
    assert f"total: {1_132_708:,} parameters" in out
