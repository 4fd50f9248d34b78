from scenelab.labels import setting_labels


def _config(**sections):
    base = {
        "data": {"data": "synthetic", "data_root": None, "workers": 2},
        "model": {"model": "simplenet", "conv": "native"},
        "optim": {"lr": 0.05},
        "train": {"epochs": 3, "name": "demo", "out_dir": "runs", "device": "auto"},
    }
    for name, fields in sections.items():
        base[name] = base[name] | fields
    return base


def test_runs_are_named_by_their_model_and_the_settings_that_differ():
    configs = [
        _config(model={"conv": "unfold"}, train={"name": "a", "out_dir": "x"}),
        _config(optim={"lr": 0.1}, data={"workers": 0}),
    ]
    # the name, the output folder and the workers differ too, but say nothing of the training
    assert setting_labels(configs, ["a", "b"]) == [
        "simplenet, conv unfold, lr 0.05",
        "simplenet, conv native, lr 0.1",
    ]


def test_models_alone_name_runs_that_differ_only_by_model():
    configs = [_config(), _config(model={"model": "vit"})]
    assert setting_labels(configs, ["a", "b"]) == ["simplenet", "vit"]


def test_runs_the_settings_cannot_tell_apart_get_their_names():
    assert setting_labels([_config(), _config()], ["demo", "demo-1"]) == [
        "simplenet (demo)",
        "simplenet (demo-1)",
    ]
    assert setting_labels([_config()], ["demo"]) == ["simplenet"]
    assert setting_labels([{}], ["old-run"]) == ["old-run"]


def test_at_most_three_settings_with_flag_style_names_and_readable_values():
    configs = [
        _config(model={"conv": "unfold"}, optim={"lr": 0.1}, train={"epochs": 5, "tta": True}),
        _config(train={"tta": False}),
    ]
    first, second = setting_labels(configs, ["a", "b"])
    assert first == "simplenet, conv unfold, lr 0.1, epochs 5"
    assert second == "simplenet, conv native, lr 0.05, epochs 3"
    tta = [_config(train={"tta": True}), _config(train={"tta": False})]
    assert setting_labels(tta, ["a", "b"]) == [
        "simplenet, tta on",
        "simplenet, tta off",
    ]


def test_among_several_runs_settings_that_split_them_alike_are_named_once():
    # adversarial training writes out the attack each method resolved (steps, step size):
    # they differ from run to run exactly as --adv-train does, and would only crowd a legend
    methods = [("none", None, None), ("madry", 7, 0.0112), ("fgsm-rs", 1, 0.0392)]
    configs = [
        _config(train={"adv_train": m, "adv_steps": steps, "adv_step_size": size})
        for m, steps, size in methods
    ]
    # nor is how much of each epoch's robust accuracy was measured (256 images with --adv-train)
    for config, limit in zip(configs, (0, 256, 256), strict=True):
        config["train"]["adv_eval_limit"] = limit
    assert setting_labels(configs, ["a", "b", "c"]) == [
        "simplenet, adv-train none",
        "simplenet, adv-train madry",
        "simplenet, adv-train fgsm-rs",
    ]
    # a setting that splits them otherwise is kept
    configs[2]["optim"]["lr"] = 0.1
    assert setting_labels(configs, ["a", "b", "c"])[2] == "simplenet, lr 0.1, adv-train fgsm-rs"
