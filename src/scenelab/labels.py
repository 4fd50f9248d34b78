"""Names for runs in figures, taken from their settings rather than their folders.

A legend that reads `20261202-053717-simplenet` and `20261202-053810-simplenet` says nothing;
one that reads `simplenet, conv unfold` and `simplenet, conv native` says what was compared.
Each run is named by its model and by the settings in which the runs differ, as flags.
"""

from __future__ import annotations

from typing import Any

# Settings that say where or how a run was executed, not what it trained: never in a label.
_NOT_SETTINGS = {
    "name",
    "out_dir",
    "device",
    "workers",
    "log_every",
    "data_root",
    "checkpoint_every",
    "resume",
    "cache_images",
    "on_bad_image",
    "val_batch_size",
    "adv_eval_limit",  # how much of each epoch's robust accuracy is measured, not what trains
    "adv_eval_steps",
}
MAX_SETTINGS = 3  # at most this many differing settings per label (the first in config order)


def _flat(config: dict[str, Any]) -> dict[str, Any]:
    """{section: {field: value}} (a run's config.yaml) -> {field: value}, in file order."""
    flat: dict[str, Any] = {}
    for section in config.values():
        if isinstance(section, dict):
            flat |= {k: v for k, v in section.items() if k not in _NOT_SETTINGS}
    return flat


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list | tuple):
        return ",".join(map(str, value))
    return str(value)


def _same_split(runs: list[dict[str, Any]], a: str, b: str) -> bool:
    """Whether settings a and b group the runs that set both alike (one value of a to each b)."""
    pairs = {
        (repr(f[a]), repr(f[b])) for f in runs if f.get(a) is not None and f.get(b) is not None
    }
    return len(pairs) == len({x for x, _ in pairs}) == len({y for _, y in pairs})


def setting_labels(configs: list[dict[str, Any]], fallbacks: list[str]) -> list[str]:
    """One label per run: its model, then `flag value` for each setting in which the runs of
    that model differ and that the run sets (up to MAX_SETTINGS; among three or more runs,
    not a setting that splits them exactly as an earlier one does). Runs the settings cannot
    tell apart (the same config twice) get `fallbacks[i]` (usually the run's name) after the
    model; so do runs without a config.
    """
    flats = [_flat(c) for c in configs]
    labels = []
    for flat, fallback in zip(flats, fallbacks, strict=True):
        model = str(flat.get("model", "")) or fallback
        # Settings are compared between runs of the same model: two models differ in their
        # own defaults (optimiser, learning rate), which the model's name already says.
        peers = [f for f in flats if f.get("model") == flat.get("model")]
        differ = []
        for k in flat:
            if k == "model" or flat[k] is None:  # unset: a ViT's embed_dim in a SimpleNet run
                continue
            if len({repr(f.get(k)) for f in peers if f.get(k) is not None}) < 2:
                continue
            # Among three or more runs, a setting that splits them exactly as an earlier one
            # does says nothing more: the attack steps and step size that come with each
            # --adv-train method, say. (Two runs split alike by every setting they differ in.)
            if len(peers) > 2 and any(_same_split(peers, k, seen) for seen in differ):
                continue
            differ.append(k)
        differ = differ[:MAX_SETTINGS]
        parts = [f"{k.replace('_', '-')} {_value(flat[k])}" for k in differ]
        labels.append(", ".join([model, *parts]))
    if len(set(labels)) < len(labels) or not flats:  # settings alike: add the names
        labels = [
            f"{label} ({fallback})" if fallback not in label else label
            for label, fallback in zip(labels, fallbacks, strict=True)
        ]
    return labels
