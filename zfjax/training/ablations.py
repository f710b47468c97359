"""Table 3's ablation driver, pure parts: variant configs from one base config, width scaling, result rows.

A variant is ``(remove, overrides)`` as in ``experiments/configs/ablation.py``: layers to drop and per-layer field
overrides for `zfjax.network.models.get`. The paper's widths are for ZFNet/AlexNet (e.g. fc6/fc7 of 8192 instead of 4096);
`scale_overrides` carries a resize to a smaller base net as the same ratio of that net's own widths.
"""
from __future__ import annotations

import copy
from typing import Any, Mapping, Sequence

from zfjax.network import models

Variant = tuple[Sequence[str], Mapping[str, Mapping[str, Any]]]


def scale_overrides(overrides: Mapping[str, Mapping[str, Any]], reference: models.Arch,
                    target: models.Arch) -> dict[str, dict[str, Any]]:
    """`overrides` written for `reference`'s layers, with each ``features`` scaled by target/reference width.

    E.g. ``fc6: 8192`` on AlexNet (4096) becomes ``fc6: 512`` on a net whose fc6 has 256 units. Other fields are
    kept as they are.
    """
    ref, tgt = _widths(reference), _widths(target)
    out: dict[str, dict[str, Any]] = {}
    for name, fields in overrides.items():
        if name not in ref or name not in tgt:
            raise ValueError(f"override for {name!r}: both nets need that layer ({reference.name}: {sorted(ref)}, "
                             f"{target.name}: {sorted(tgt)})")
        out[name] = dict(fields)
        if "features" in fields:
            out[name]["features"] = max(1, int(round(fields["features"] * tgt[name] / ref[name])))
    return out


def _widths(arch: models.Arch) -> dict[str, int]:
    return {c.name: c.features for c in arch.convs} | {f.name: f.features for f in arch.fcs}


def variant_config(base: Any, variant: Variant) -> Any:
    """A copy of the training config `base` with the variant's layers removed and overrides merged per layer."""
    remove, overrides = variant
    config = copy.deepcopy(base)
    with config.unlocked():
        merged = {k: dict(v) for k, v in base.model_overrides.to_dict().items()}
        for name, fields in overrides.items():
            merged.setdefault(name, {}).update(fields)
        config.remove = tuple(base.remove) + tuple(remove)
        config.model_overrides = {k: v for k, v in merged.items() if k not in config.remove}
    return config


def error_row(name: str, train_top1: float, val_top1: float, val_top5: float) -> list[str]:
    """A Table 3 row: error % (100 - accuracy) of train top-1, val top-1, val top-5."""
    return [name] + [f"{100 * (1 - a):.1f}" for a in (train_top1, val_top1, val_top5)]


def check_variants(names: Sequence[str], known: Mapping[str, Variant]) -> None:
    """ValueError naming unknown variant names (``base`` is always known: the unmodified config)."""
    bad = [n for n in names if n != "base" and n not in known]
    if bad or len(set(names)) != len(names):
        raise ValueError(f"variants {list(names)}: unknown {bad} or repeated; choose from ['base'] + {sorted(known)}")

