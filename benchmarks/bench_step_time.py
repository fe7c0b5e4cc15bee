"""Where one fine-tuning step's time goes, per method, on the demo base model (CPU by default).

One training step = forward (diffusion loss) + backward + optimizer (clip, AdamW step, zero_grad), as the
trainer does it, at batch 1 on the model's grid. Every case is its own deep copy of the base model; the
cases run round-robin, one step each per repeat (medians reported), so a change in machine load hits all
alike. The backward is split by toggling requires_grad: the "frozen" case trains nothing but asks for the
gradient of the noisy input, so its backward is the activation backward alone (every layer's grad-input,
no weight or bias gradients); a method's backward minus that is what its parameter gradients cost
(conv weight gradients for full fine-tuning and for ΔW-materialising adapters). Measurement prototypes,
not library methods: "norms only" is norm-bias with every conv/linear bias frozen (what do the biases
cost?); "bias outside conv" runs each Conv3d as conv(x, W) + b, so a trained bias no longer makes the
convolution backward compute a weight gradient; "lora side branch" is LoRA as conv(x, W0) + b + s·B(A(x))
(bias outside too) instead of one convolution on W0 + ΔW. Full fine-tuning is the baseline, same run.

Usage: python benchmarks/bench_step_time.py [--repeats 5] [--threads 1] [--out docs/benchmarks]
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
import types
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from DiffusionPEFTLib.adapters import inject  # noqa: E402
from DiffusionPEFTLib.models import load_model  # noqa: E402
from DiffusionPEFTLib.resources import demo_model_dir  # noqa: E402

CASES = ["full", "norm-bias", "norm-bias, bias outside conv", "norms only", "lora", "lora side branch", "tenvoo-l",
         "frozen"]
PHASES = ("forward_s", "backward_s", "optimizer_s")


def conv_bias_outside(conv: torch.nn.Conv3d, x: torch.Tensor) -> torch.Tensor:
    """conv(x, W) + b as two ops: the bias gradient is then a sum, not part of the convolution backward."""
    out = F.conv3d(x, conv.weight, None, conv.stride, conv.padding, conv.dilation, conv.groups)
    return out if conv.bias is None else out + conv.bias.view(1, -1, 1, 1, 1)


def side_branch_forward(layer, x: torch.Tensor) -> torch.Tensor:
    """LoRA as a branch over the activations: conv(x, W0) + b + s·B(A(x)); W0 gets no gradient."""
    base = layer.base
    if layer.is_conv:
        down = layer.lora_down.view(layer.rank, *base.weight.shape[1:])
        hidden = F.conv3d(x, down, None, base.stride, base.padding, base.dilation, base.groups)
        up = layer.lora_up.view(layer.out_features, layer.rank, 1, 1, 1)
        return conv_bias_outside(base, x) + layer.scale * F.conv3d(hidden, up)
    return base(x) + layer.scale * F.linear(F.linear(x, layer.lora_down), layer.lora_up)


class Case:
    """One method on its own copy of the model, with its optimizer."""

    def __init__(self, name: str, base_model, rank: int, lr: float = 1e-4):
        self.name = name
        self.model = copy.deepcopy(base_model)
        method = {"lora side branch": "lora", "norms only": "norm-bias", "norm-bias, bias outside conv": "norm-bias"
                  }.get(name, name)
        if name == "frozen":
            self.model.requires_grad_(False)
            self.params = []
        else:
            adapters = inject(self.model.unet, method, rank=rank) if method in ("lora", "tenvoo-l") else \
                inject(self.model.unet, method)
            if name == "lora side branch":
                for layer in adapters.layers.values():
                    layer.forward = types.MethodType(side_branch_forward, layer)
            if name == "norm-bias, bias outside conv":
                for module in self.model.modules():
                    if isinstance(module, torch.nn.Conv3d):
                        module.forward = types.MethodType(conv_bias_outside, module)
            if name == "norms only":
                for module in self.model.modules():
                    if isinstance(module, (torch.nn.Conv3d, torch.nn.Linear)) and module.bias is not None:
                        module.bias.requires_grad_(False)
            self.params = [p for p in adapters.trainable_parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.params, lr=lr) if self.params else None
        self.model.train()
        self.times: dict[str, list[float]] = {phase: [] for phase in PHASES}

    def step(self, batch, record: bool) -> None:
        x0, noise, timesteps = batch
        noise = noise.clone().requires_grad_(self.name == "frozen")  # frozen: the activation backward only
        start = time.perf_counter()
        loss = self.model.loss(x0, noise, timesteps)
        forward = time.perf_counter()
        loss.backward()
        backward = time.perf_counter()
        if self.optimizer is not None:
            torch.nn.utils.clip_grad_norm_(self.params, 1.0)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
        done = time.perf_counter()
        if record:
            for phase, seconds in zip(PHASES, (forward - start, backward - forward, done - backward)):
                self.times[phase].append(seconds)

    def row(self) -> dict:
        medians = {phase: statistics.median(values) for phase, values in self.times.items()}
        step = statistics.median([sum(parts) for parts in zip(*self.times.values())])
        return {"case": self.name, "trainable": sum(p.numel() for p in self.params), **medians, "step_s": step,
                "repeats": len(self.times["forward_s"])}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(demo_model_dir()))
    parser.add_argument("--rank", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="docs/benchmarks")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    base_model = load_model(args.model)
    generator = torch.Generator().manual_seed(args.seed)
    shape = (1, base_model.in_channels, *base_model.grid_shape)
    batch = (torch.rand(shape, generator=generator), torch.randn(shape, generator=generator),
             torch.tensor([base_model.schedule.num_train_timesteps // 2]))
    cases = [Case(name, base_model, args.rank) for name in CASES]
    for repeat in range(args.warmup + args.repeats):
        for case in cases:
            case.step(batch, record=repeat >= args.warmup)
    rows = [case.row() for case in cases]
    write_tables(rows, args, base_model)


def write_tables(rows: list[dict], args, base_model) -> None:
    full = next(r for r in rows if r["case"] == "full")
    floor = next(r for r in rows if r["case"] == "frozen")["backward_s"]
    for r in rows:
        r["parameter_gradients_s"] = r["backward_s"] - floor
        r["step_vs_full"] = r["step_s"] / full["step_s"]
    lines = [f"One training step of `{Path(args.model).name}` ({'×'.join(map(str, base_model.grid_shape))}, batch 1, "
             f"rank {args.rank}), median of {args.repeats} round-robin repeats after {args.warmup} warm-up; "
             f"{args.threads} CPU thread(s), torch {torch.__version__}. Seconds. \"parameter gradients\" = backward "
             "minus the frozen case's backward (the activation backward every method needs).",
             "",
             "| case | trainable | forward | backward | of which parameter gradients | optimizer | step | step ÷ full |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['case']} | {r['trainable']:,} | {r['forward_s']:.3f} | {r['backward_s']:.3f} | "
                     f"{r['parameter_gradients_s']:.3f} | {r['optimizer_s']:.4f} | {r['step_s']:.3f} | "
                     f"{r['step_vs_full']:.2f} |")
    table = "\n".join(lines)
    print(table)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    settings = {**vars(args), "model": Path(args.model).name, "torch": torch.__version__}
    (out / "step_time.json").write_text(json.dumps({"settings": settings, "rows": rows}, indent=2))
    (out / "step_time.md").write_text(table + "\n")


if __name__ == "__main__":
    main()
