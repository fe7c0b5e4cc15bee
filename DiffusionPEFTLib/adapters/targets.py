"""Which layers to wrap: presets and regular expressions over module names (full match).

A target spec is a preset name, a regex, or a list mixing both. Regexes must match the whole
qualified module name (``re.fullmatch``) and only ``nn.Conv3d`` / ``nn.Linear`` modules count: MONAI
wraps its convolutions in ``Convolution`` (Sequential), so target ``…conv1.conv``, not ``…conv1``.

Presets (MONAI ``DiffusionModelUNet`` names, reference §2.5 and tasks_and_monai §3.3):
  tenvoo     the official TenVOO set: resnet conv1/conv2, attention to_q/to_v, every resnet
             time_emb_proj and time_embed.2; also trains every parameter whose name contains "norm" and
             the biases of the wrapped layers. Like the official code it does NOT match the middle block
             (``middle_block.resnet_1/_2``, ``middle_block.attention`` are not ``resnets``/``attentions``).
  all-conv   every Conv3d (conv_in, resnets, skips, down/upsamplers, middle block, out).
  attention  every attention projection to_q/to_k/to_v/out_proj (and qkv), middle block included; in a
             conditioned UNet the transformer blocks' self- and cross-attention (attn1, attn2) too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from torch import nn

from ..errors import AdapterError
from .base import SUPPORTED_LAYERS
from .selection import compile_pattern


@dataclass(frozen=True)
class TargetPreset:
    patterns: tuple[str, ...]
    layer_types: tuple[type, ...]
    train_norms: bool | str
    train_bias: bool


PRESETS: dict[str, TargetPreset] = {
    "tenvoo": TargetPreset(
        patterns=(r".*resnets.*\.conv1\.conv", r".*resnets.*\.conv2\.conv", r".*attentions.*\.to_q",
                  r".*attentions.*\.to_v", r".*resnets.*\.time_emb_proj", r"time_embed\.2"),
        layer_types=SUPPORTED_LAYERS, train_norms="norm", train_bias=True),
    "all-conv": TargetPreset(patterns=(r".*",), layer_types=(nn.Conv3d,), train_norms=False, train_bias=False),
    "attention": TargetPreset(patterns=(r".*\.attn[12]?\.(to_q|to_k|to_v|out_proj|qkv)",), layer_types=(nn.Linear,),
                              train_norms=False, train_bias=False),
}
DEFAULT_TARGETS = "tenvoo"


@dataclass(frozen=True)
class ResolvedTargets:
    """The spec as given, its (pattern, layer types) rules, and the extra trainables its presets imply."""

    spec: tuple[str, ...]
    rules: tuple[tuple[str, tuple[type, ...]], ...]
    train_norms: bool | str
    train_bias: bool


def resolve_targets(targets: str | Sequence[str] | None) -> ResolvedTargets:
    """Expand presets; extra-trainable defaults come from the first preset named (none for pure regexes)."""
    spec = (DEFAULT_TARGETS,) if targets is None else (targets,) if isinstance(targets, str) else tuple(targets)
    if not spec:
        raise AdapterError("No adapter targets given.", hint=f"Use a preset ({', '.join(PRESETS)}) or a regex.")
    rules: list[tuple[str, tuple[type, ...]]] = []
    presets = [PRESETS[item] for item in spec if item in PRESETS]
    for item in spec:
        if item in PRESETS:
            rules += [(p, PRESETS[item].layer_types) for p in PRESETS[item].patterns]
        else:
            compile_pattern(item)
            rules.append((item, SUPPORTED_LAYERS))
    first = presets[0] if presets else TargetPreset((), (), False, False)
    return ResolvedTargets(spec, tuple(rules), first.train_norms, first.train_bias)


def match_layers(model: nn.Module, targets: ResolvedTargets) -> dict[str, nn.Module]:
    """{name: layer} of every module a rule matches, in model order; AdapterError for a rule matching nothing."""
    modules = [(name, module) for name, module in model.named_modules() if name]
    matched: dict[str, nn.Module] = {}
    for pattern, layer_types in targets.rules:
        regex = compile_pattern(pattern)
        hits = [(name, module) for name, module in modules if regex.fullmatch(name)]
        names = [name for name, _ in hits]
        hits = [(name, module) for name, module in hits if isinstance(module, layer_types)]
        if not hits:
            raise no_match_error(pattern, names, modules, layer_types)
        matched.update(hits)
    order = {name: i for i, (name, _) in enumerate(modules)}
    return dict(sorted(matched.items(), key=lambda item: order[item[0]]))


def no_match_error(pattern: str, names: list[str], modules: list[tuple[str, nn.Module]],
                   layer_types: tuple[type, ...]) -> AdapterError:
    wanted = "/".join(t.__name__ for t in layer_types)
    if names:
        kinds = dict(modules)
        found = ", ".join(f"{n} ({type(kinds[n]).__name__})" for n in names[:3])
        hint = (f"It matches only {found}, which are not {wanted}. For MONAI convolutions add '\\.conv' "
                f"(e.g. 'conv1\\.conv').")
    else:
        examples = ", ".join(name for name, m in modules if isinstance(m, layer_types))
        hint = f"Patterns must match whole module names, e.g. {examples[:300]}…"
    return AdapterError(f"The adapter target {pattern!r} matches no {wanted} layer in this model.", hint=hint)
