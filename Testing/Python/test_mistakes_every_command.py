"""A user's mistakes through every command and ``run job.json``: each ends in exactly one ``error`` event
with a kind, a message naming what is wrong and a hint, a non-zero exit, no traceback ("internal"), and
not one file created, changed or removed in the user's folder (hashed before and after)."""

from __future__ import annotations

import gzip
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import nibabel as nib
import numpy as np
import pytest
import torch
from bundles import BRAIN_NETWORKS, tiny_inference, tiny_metadata, write_bundle
from conftest import TINY_ARCH, run_cli
from sandbox import make_sandbox, snapshot

# --- setups: files a case needs besides the sandbox -----------------------------------------------


def edited_model(change: Callable[[dict], None]):
    def setup(root: Path) -> None:
        spec = json.loads((root / "model" / "model.json").read_text())
        change(spec)
        (root / "model" / "model.json").write_text(json.dumps(spec))
    return setup


def model_json_text(text: str):
    def setup(root: Path) -> None:
        (root / "model" / "model.json").write_text(text)
    return setup


def truncated_weights(root: Path) -> None:
    weights = root / "model" / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])


def trained_adapter(root: Path) -> None:
    code, events = run_cli("finetune", root / "model", root / "scans", "--method", "lora", "--rank", "2",
                           "--steps", "2", "--out", root / "adapter", "--checkpoint-every", "1")
    assert code == 0, events.events


def truncated_adapter(root: Path) -> None:
    trained_adapter(root)
    tensors = root / "adapter" / "adapter.safetensors"
    tensors.write_bytes(tensors.read_bytes()[:100])


def garbage_adapter_manifest(root: Path) -> None:
    trained_adapter(root)
    (root / "adapter" / "adapter.json").write_text('{"format": "diffusion-peft-adapter", "format_version": 1}')


def volume_file(name: str, data, affine=np.eye(4), dtype=np.float32):
    def setup(root: Path) -> None:
        nib.save(nib.Nifti1Image(np.asarray(data, dtype=dtype), affine), str(root / name))
    return setup


FAR_RIGHT = np.array([[3.0, 0, 0, 900], [0, 3, 0, 0], [0, 0, 3, 0], [0, 0, 0, 1]])  # 900 mm right of ref.nii.gz


def npy_file(name: str, array: np.ndarray):
    def setup(root: Path) -> None:
        np.save(root / name, array)
    return setup


def text_file(name: str, text: str = "not what the name says\n"):
    def setup(root: Path) -> None:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return setup


def state_dict_file(root: Path) -> None:
    from DiffusionPEFTLib.models import load_model

    torch.save(load_model(root / "model").unet.state_dict(), root / "state.pt")
    shutil.copy(root / "model" / "model.json", root / "model.json")


def pickled_code_file(root: Path) -> None:
    class Payload:
        def __reduce__(self):
            return (print, ("this must never run",))

    torch.save({"weights": Payload()}, root / "evil.pt")
    shutil.copy(root / "model" / "model.json", root / "model.json")


def mismatched_state_dict(root: Path) -> None:
    state_dict_file(root)
    spec = json.loads((root / "model.json").read_text())
    spec["architecture"]["arguments"]["channels"] = [8, 16, 32]
    (root / "model.json").write_text(json.dumps(spec))


def bundle_folder(weights: bool = True, **changes):
    """A MONAI bundle (narrow networks in the brain LDM's scheme) in ``bundle/``; ``changes`` replace entries of
    its inference.json after the weights are made."""
    def setup(root: Path) -> None:
        write_bundle(root / "bundle", tiny_inference(), tiny_metadata(), BRAIN_NETWORKS if weights else None)
        config = {**tiny_inference(), **changes}
        (root / "bundle" / "configs" / "inference.json").write_text(json.dumps(config))
    return setup


def work_folder_with(checkpoint: bytes | None):
    def setup(root: Path) -> None:
        work = root / "new_model.work"
        work.mkdir()
        (work / ".diffusion-peft-output.json").write_text('{"written_by": "DiffusionPEFT", "kind": "work"}')
        if checkpoint is not None:
            (work / "checkpoint.pt").write_bytes(checkpoint)
    return setup


def finished_finetune(root: Path) -> None:
    trained_adapter(root)


def study_folder(settings: dict | None):
    """A benchmark-paradigms study folder whose state has ``settings`` (None: a damaged state file)."""
    def setup(root: Path) -> None:
        (root / "study").mkdir()
        (root / "study" / ".diffusion-peft-output.json").write_text('{"written_by": "DiffusionPEFT", "kind": "paradigms-study"}')
        state = {"format": "diffusion-peft-paradigms", "format_version": 1, "settings": settings, "cells": {}}
        (root / "study" / "paradigms.json").write_text(json.dumps(state) if settings is not None else "{oops")
    return setup


def job(spec, raw: bytes | None = None):
    def setup(root: Path) -> None:
        (root / "job").mkdir()
        (root / "job" / "job.json").write_bytes(raw if raw is not None else json.dumps(spec).encode())
    return setup


def combined(*setups):
    def setup(root: Path) -> None:
        for step in setups:
            step(root)
    return setup


# --- the cases ---------------------------------------------------------------------------------------


@dataclass
class Case:
    argv: list
    kind: str
    words: list = field(default_factory=list)
    setup: Callable[[Path], None] | None = None
    env: dict = field(default_factory=dict)  # environment variables for this case (e.g. what torchrun sets)


SYN = ["synthesize", "model", "--steps", "2"]
PRE = ["pretrain", "scans", *TINY_ARCH, "--steps", "1"]
FT = ["finetune", "model", "scans", "--steps", "1"]
BP = ["benchmark-paradigms", "--model", "model", "--methods", "lora", "--seeds", "1", "--budgets", "1"]
NON_UTF8 = "out\udcff.nii.gz"  # how Python hands a non-UTF-8 file name from argv to the program

CASES = {
    # global options
    "batch-0": Case([*SYN, "--batch", "0", "--out", "o.nii.gz"], "input", ["--batch", "≥ 1"]),
    "threads-negative": Case([*SYN, "--threads", "-1", "--out", "o.nii.gz"], "input", ["--threads"]),
    "seed-negative": Case([*SYN, "--seed", "-5", "--out", "o.nii.gz"], "input", ["--seed"]),
    "budget-zero": Case([*SYN, "--memory-budget-gb", "0", "--out", "o.nii.gz"], "input", ["--memory-budget-gb"]),
    "device-unknown": Case([*SYN, "--device", "tpu", "--out", "o.nii.gz"], "input", ["device", "cpu"]),
    "device-cuda-absent": pytest.param(Case([*SYN, "--device", "cuda", "--out", "o.nii.gz"], "input", ["cuda"]),
                                       marks=pytest.mark.skipif(torch.cuda.is_available(), reason="has a GPU")),
    # synthesize
    "steps-0": Case([*SYN[:2], "--steps", "0", "--out", "o.nii.gz"], "input", ["--steps"]),
    "n-0": Case([*SYN, "--n", "0", "--out", "o.nii.gz"], "input", ["--n"]),
    "eta-negative": Case([*SYN, "--eta", "-1", "--out", "o.nii.gz"], "input", ["--eta", "[0, 1]"]),
    "eta-above-1": Case([*SYN, "--eta", "2", "--out", "o.nii.gz"], "input", ["--eta"]),
    "class-label-unconditional": Case([*SYN, "--class-label", "0", "--out", "o.nii.gz"], "input",
                                      ["class label 0", "unconditional"]),
    "sampler-unknown": Case([*SYN, "--sampler", "euler", "--out", "o.nii.gz"], "input", ["--sampler"]),
    "condition-not-pairs": Case([*SYN, "--condition", "age", "--out", "o.nii.gz"], "input", ["--condition", "name=number"]),
    "condition-on-pixel-model": Case([*SYN, "--condition", "age=0.5", "--out", "o.nii.gz"], "input", ["--condition"]),
    "out-not-a-volume": Case([*SYN, "--out", "o.txt"], "input", [".nii.gz"]),
    "out-exists": Case([*SYN, "--out", "existing.nii.gz"], "input", ["already exists", "--overwrite"]),
    "out-is-reference": Case([*SYN, "--like", "ref.nii.gz", "--out", "ref.nii.gz", "--overwrite"], "input",
                             ["is the input"]),
    "out-inside-model": Case([*SYN, "--out", "model/sample.nii.gz"], "input", ["inside the input"]),
    "out-name-not-utf8": Case([*SYN, "--out", NON_UTF8], "input", ["utf-8"]),
    "out-parent-is-file": Case([*SYN, "--out", "notes/patient_list.txt/o.nii.gz"], "input", ["is a file"]),
    "overwrite-foreign-file": Case([*SYN, "--out", "fake.nii.gz", "--overwrite"], "input", ["did not write"],
                                   text_file("fake.nii.gz")),
    "model-missing": Case(["synthesize", "no_model", "--out", "o.nii.gz"], "model", ["not found"]),
    "model-not-a-package": Case(["synthesize", "notes", "--out", "o.nii.gz"], "model", ["model.json is missing"]),
    "model-json-not-json": Case([*SYN, "--out", "o.nii.gz"], "model", ["not valid json"], model_json_text("{oops")),
    "model-json-a-list": Case([*SYN, "--out", "o.nii.gz"], "model", ["top level"], model_json_text("[1, 2]")),
    "model-json-shape-text": Case([*SYN, "--out", "o.nii.gz"], "model", ["input.shape[0]"],
                                  edited_model(lambda s: s["input"].__setitem__("shape", ["16", 16, 16]))),
    "model-json-channels-text": Case([*SYN, "--out", "o.nii.gz"], "model", ["architecture.arguments.channels"],
                                     edited_model(lambda s: s["architecture"]["arguments"].__setitem__("channels", "8,16"))),
    "model-json-timesteps-negative": Case([*SYN, "--out", "o.nii.gz"], "model", ["scheduler.num_train_timesteps"],
                                          edited_model(lambda s: s["scheduler"].__setitem__("num_train_timesteps", -5))),
    "model-json-prediction-unknown": Case([*SYN, "--out", "o.nii.gz"], "model", ["prediction_type", "epsilon"],
                                          edited_model(lambda s: s["scheduler"].__setitem__("prediction_type", "noise"))),
    "model-json-spacing-zero": Case([*SYN, "--out", "o.nii.gz"], "model", ["input.spacing[1]"],
                                    edited_model(lambda s: s["input"].__setitem__("spacing", [4, 0, 4]))),
    "model-json-2d": Case([*SYN, "--out", "o.nii.gz"], "model", ["spatial_dims", "3d"],
                          edited_model(lambda s: s["architecture"]["arguments"].__setitem__("spatial_dims", 2))),
    "weights-truncated": Case([*SYN, "--out", "o.nii.gz"], "model", ["checksum"], truncated_weights),
    "adapter-truncated": Case([*SYN, "--adapter", "adapter", "--out", "o.nii.gz"], "adapter", ["damaged"],
                              truncated_adapter),
    "adapter-not-a-package": Case([*SYN, "--adapter", "notes", "--out", "o.nii.gz"], "adapter", ["adapter.json"]),
    "adapter-manifest-fields": Case([*SYN, "--adapter", "adapter", "--out", "o.nii.gz"], "adapter", ["lacks fields"],
                                    garbage_adapter_manifest),
    "like-complex": Case([*SYN, "--like", "c.nii.gz", "--out", "o.nii.gz"], "input", ["complex", "magnitude"],
                         volume_file("c.nii.gz", np.ones((8, 8, 8)) * (1 + 2j), dtype=np.complex64)),
    "like-2d": Case([*SYN, "--like", "s.nii.gz", "--out", "o.nii.gz"], "input", ["3d"],
                    volume_file("s.nii.gz", np.random.rand(16, 16))),
    "like-nan": Case([*SYN, "--like", "n.nii.gz", "--out", "o.nii.gz"], "input", ["nan"],
                     volume_file("n.nii.gz", np.where(np.random.rand(8, 8, 8) > 0.5, np.nan, 1.0))),
    "like-damaged": Case([*SYN, "--like", "d.nii.gz", "--out", "o.nii.gz"], "input", ["damaged"],
                         lambda root: (root / "d.nii.gz").write_bytes(gzip.compress(b"\x00" * 400))),
    # evaluate
    "evaluate-json-is-input": Case(["evaluate", "ref.nii.gz", "existing.nii.gz", "--json", "ref.nii.gz",
                                    "--overwrite"], "input", ["is the input"]),
    "evaluate-json-exists": Case(["evaluate", "ref.nii.gz", "existing.nii.gz", "--json", "m.json"], "input",
                                 ["already exists"], text_file("m.json", "{}")),
    "evaluate-json-is-folder": Case(["evaluate", "ref.nii.gz", "existing.nii.gz", "--json", "notes", "--overwrite"],
                                    "input", ["is a folder"]),
    "evaluate-missing": Case(["evaluate", "nope.nii.gz", "ref.nii.gz"], "input", ["not found"]),
    "evaluate-not-a-volume": Case(["evaluate", "notes/patient_list.txt", "ref.nii.gz"], "input", [".nii.gz"]),
    # info
    "info-missing": Case(["info", "no_model"], "model", ["not found"]),
    "info-not-a-package": Case(["info", "scans"], "model", ["model.json is missing"]),
    # import
    "import-out-dot": Case(["import", "model.json", "state.pt", "--out", "."], "input", ["contains the input"],
                           state_dict_file),
    "import-text-as-pt": Case(["import", "model/model.json", "notes/patient_list.txt", "--out", "new"], "model",
                              ["not a pytorch checkpoint"]),
    "import-pickled-code": Case(["import", "model.json", "evil.pt", "--out", "new"], "model", ["code"],
                                pickled_code_file),
    "import-out-user-folder": Case(["import", "model.json", "state.pt", "--out", "notes"], "input",
                                   ["already exists"], state_dict_file),
    "import-overwrite-user-folder": Case(["import", "model.json", "state.pt", "--out", "notes", "--overwrite"],
                                         "input", ["did not write", "patient_list.txt"], state_dict_file),
    "import-wrong-architecture": Case(["import", "model.json", "state.pt", "--out", "new"], "model", ["do not fit"],
                                      mismatched_state_dict),
    "import-missing-checkpoint": Case(["import", "model/model.json", "none.pt", "--out", "new"], "model",
                                      ["not found", "put the downloaded file here", "none.pt"]),
    "import-preset-with-model-json": Case(["import", "--preset", "tenvoo", "model.json", "state.pt", "--out", "new"],
                                          "input", ["takes one file", "drop the model.json"], state_dict_file),
    "import-checkpoint-without-config": Case(["import", "state.pt", "--out", "new"], "input",
                                             ["model.json and a checkpoint", "(1 file)", "--preset"], state_dict_file),
    "import-preset-unknown": Case(["import", "--preset", "sd15", "state.pt", "--out", "new"], "input",
                                  ["invalid choice: 'sd15'", "tenvoo"], state_dict_file),
    "import-preset-wrong-architecture": Case(["import", "--preset", "tenvoo", "state.pt", "--out", "new"], "model",
                                             ["do not fit", "preset tenvoo", "missing (", "--preset"],
                                             state_dict_file),
    # import-bundle
    "import-bundle-missing": Case(["import-bundle", "no_bundle", "--out", "new"], "input", ["not found"]),
    "import-bundle-not-a-bundle": Case(["import-bundle", "notes", "--out", "new"], "input", ["inference.json"]),
    "import-bundle-out-inside": Case(["import-bundle", "bundle", "--out", "bundle/model"], "input",
                                     ["inside the input"], bundle_folder()),
    "import-bundle-no-weights": Case(["import-bundle", "bundle", "--out", "new"], "model",
                                     ["put the downloaded file here", "autoencoder.pt"], bundle_folder(weights=False)),
    "import-bundle-expression": Case(["import-bundle", "bundle", "--out", "new"], "input",
                                     ["scale_factor", "never run", "--scale-factor"],
                                     bundle_folder(scale_factor="$float(open('scale.txt').read())")),
    "import-bundle-shape-not-multiple": Case(["import-bundle", "bundle", "--shape", "10", "16", "16", "--out", "new"],
                                             "input", ["multiple of 4", "--shape"], bundle_folder()),
    "import-bundle-not-json": Case(["import-bundle", "bundle", "--out", "new"], "input", ["not valid json"],
                                   combined(bundle_folder(), text_file("bundle/configs/inference.json", "{oops"))),
    # pretrain
    "pretrain-ema-1": Case([*PRE, "--ema", "1", "--out", "m"], "input", ["--ema", "[0, 1)"]),
    "pretrain-out-is-data": Case([*PRE, "--out", "scans", "--overwrite"], "input", ["is the input"]),
    "pretrain-out-inside-data": Case([*PRE, "--out", "scans/model"], "input", ["inside the input"]),
    "pretrain-out-is-listed-volume": Case(["pretrain", "manifest.json", *TINY_ARCH, "--out", "scans/scan0.nii.gz",
                                           "--overwrite"], "input", ["is the input"]),
    "pretrain-attention-level-2": Case([*PRE, "--attention-levels", "0", "2", "1", "--out", "m"], "input",
                                       ["--attention-levels"]),
    "pretrain-schedule-unknown": Case([*PRE, "--schedule", "bogus", "--out", "m"], "input", ["--schedule", "cosine"]),
    "pretrain-timesteps-0": Case([*PRE, "--timesteps", "0", "--out", "m"], "input", ["--timesteps"]),
    "pretrain-spacing-0": Case([*PRE, "--spacing", "0", "--out", "m"], "input", ["--spacing"]),
    "pretrain-spacing-negative": Case([*PRE, "--spacing", "-12", "--out", "m"], "input", ["--spacing"]),
    "pretrain-spacing-two-values": Case([*PRE, "--spacing", "4", "4", "--out", "m"], "input", ["--spacing"]),
    "pretrain-channels-0": Case([*PRE, "--channels", "0", "0", "0", "--out", "m"], "input", ["--channels"]),
    "pretrain-channels-not-groups": Case([*PRE, "--channels", "8", "12", "16", "--out", "m"], "input",
                                         ["cannot be built", "--norm-groups"]),
    "pretrain-shape-not-divisible": Case([*PRE, "--shape", "16", "16", "15", "--out", "m"], "input", ["divisible"]),
    "pretrain-val-fraction-2": Case([*PRE, "--val-fraction", "2", "--out", "m"], "input", ["--val-fraction"]),
    "pretrain-lr-negative": Case([*PRE, "--lr", "-1", "--out", "m"], "input", ["--lr"]),
    "pretrain-lr-nan": Case([*PRE, "--lr", "nan", "--out", "m"], "input", ["--lr"]),
    "pretrain-warmup-negative": Case([*PRE, "--warmup", "-1", "--out", "m"], "input", ["--warmup"]),
    "pretrain-earlier-checkpoint": Case([*PRE, "--out", "new_model"], "input", ["checkpoint", "--resume"],
                                        work_folder_with(b"x")),
    "pretrain-damaged-checkpoint": Case([*PRE, "--out", "new_model", "--resume"], "input", ["damaged"],
                                        work_folder_with(b"not a checkpoint")),
    "pretrain-workdir-user-folder": Case([*PRE, "--out", "m", "--workdir", "notes"], "input",
                                         ["not a diffusionpeft work folder"]),
    "pretrain-data-missing": Case([*PRE[:1], "no_scans", *PRE[2:], "--out", "m"], "input", ["not found"]),
    # finetune
    "finetune-resume-out-is-data": Case([*FT, "--resume", "--out", "scans"], "input", ["is the input"]),
    "finetune-overwrite-out-is-model": Case([*FT, "--overwrite", "--out", "model"], "input", ["is the input"]),
    "finetune-out-inside-model": Case([*FT, "--out", "model/adapter"], "input", ["inside the input"]),
    "finetune-rank-1000": Case([*FT, "--rank", "1000", "--out", "a"], "adapter", ["more than", "--rank"]),
    "finetune-rank-0": Case([*FT, "--rank", "0", "--out", "a"], "input", ["--rank"]),
    "finetune-lr-inf": Case([*FT, "--lr", "inf", "--out", "a"], "input", ["--lr"]),
    "finetune-val-fraction-2": Case([*FT, "--val-fraction", "2", "--out", "a"], "input", ["--val-fraction"]),
    "finetune-class-label-unconditional": Case([*FT, "--class-label", "0", "--out", "a"], "input", ["unconditional"]),
    "finetune-method-unknown": Case([*FT, "--method", "qlora", "--out", "a"], "input", ["--method"]),
    "finetune-option-not-pair": Case([*FT, "--option", "alpha", "--out", "a"], "input", ["key=value"]),
    "finetune-no-out": Case(FT, "input", ["--out"]),
    "finetune-condition-on-pixel-model": Case([*FT, "--condition", "age=0.5", "--out", "a"], "input", ["--condition"]),
    "finetune-diverges": Case([*FT[:4], "3", "--method", "full", "--lr", "1e30", "--out", "a"], "input",
                              ["diverged", "--lr"]),
    "finetune-resume-other-rank": Case([*FT, "--method", "lora", "--rank", "4", "--resume", "--overwrite",
                                        "--out", "adapter"], "input", ["other settings", "rank"], finished_finetune),
    "finetune-resume-other-seed": Case([*FT, "--method", "lora", "--rank", "2", "--resume", "--overwrite",
                                        "--seed", "99", "--out", "adapter"], "input", ["other settings", "seed"],
                                       finished_finetune),
    "finetune-manifest-not-json": Case(["finetune", "model", "m.json", "--out", "a"], "input", ["not valid json"],
                                       text_file("m.json", "{oops")),
    "finetune-manifest-not-utf8": Case(["finetune", "model", "m.txt", "--out", "a"], "input", ["utf-8"],
                                       lambda root: (root / "m.txt").write_bytes(b"\xff\xfescan.nii.gz")),
    "finetune-manifest-numbers": Case(["finetune", "model", "m.json", "--out", "a"], "input", ["does not list"],
                                      text_file("m.json", "[1, 2]")),
    "finetune-manifest-missing-volume": Case(["finetune", "model", "m.json", "--out", "a"], "input", ["not found"],
                                             text_file("m.json", '["gone.nii.gz"]')),
    "finetune-no-volume-matches": Case([*FT, "--pattern", "*.nrrd", "--out", "a"], "input", ["no training volumes"]),
    "finetune-targets-bad-regex": Case([*FT, "--targets", "(", "--out", "a"], "adapter", ["regular expression"]),
    "finetune-targets-no-match": Case([*FT, "--targets", "zzz", "--out", "a"], "adapter", ["matches no"]),
    "finetune-option-unknown": Case([*FT, "--option", "bogus=3", "--out", "a"], "adapter", ["no option 'bogus'"]),
    "finetune-workdir-is-a-volume": Case([*FT, "--workdir", "scans/scan0.nii.gz", "--out", "a"], "input",
                                         ["inside the input"]),
    "finetune-dry-run-rank-1000": Case(["finetune", "model", "--dry-run", "--rank", "1000"], "adapter", ["more than"]),
    # streaming data and torchrun
    "pretrain-data-loading-unknown": Case([*PRE, "--data-loading", "disk", "--out", "m"], "input", ["--data-loading"]),
    "pretrain-workers-negative": Case([*PRE, "--data-loading", "stream", "--workers", "-1", "--out", "m"], "input",
                                      ["--workers"]),
    "finetune-workers-in-memory": Case([*FT, "--workers", "2", "--out", "a"], "input",
                                       ["--workers", "--data-loading stream"]),
    "finetune-streamed-volume-damaged": Case([*FT, "--data-loading", "persistent", "--workers", "1", "--out", "a"],
                                             "input", ["scan9.nii.gz", "damaged"],
                                             text_file("scans/scan9.nii.gz", "not a volume\n")),
    "synthesize-under-torchrun": Case([*SYN, "--out", "o.nii.gz"], "input", ["synthesize", "torchrun"],
                                      env={"WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1"}),
    "finetune-world-size-without-torchrun": Case([*FT, "--out", "a"], "input", ["MASTER_ADDR", "torchrun"],
                                                 env={"WORLD_SIZE": "2"}),
    "finetune-torchrun-gpu-index": Case([*FT, "--device", "cuda:1", "--out", "a"], "input",
                                        ["cuda:1", "LOCAL_RANK", "CUDA_VISIBLE_DEVICES"],
                                        env={"WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1"}),
    # precision, activation checkpointing, memory plan
    "finetune-precision-fp16-on-cpu": Case([*FT, "--precision", "fp16", "--device", "cpu", "--out", "a"], "input",
                                           ["fp16", "cuda", "--precision bf16"]),
    "finetune-precision-unknown": Case([*FT, "--precision", "int8", "--out", "a"], "input", ["--precision", "bf16"]),
    "finetune-gpu-memory-without-plan": Case([*FT, "--gpu-memory-gb", "24", "--out", "a"], "input",
                                             ["--gpu-memory-gb", "--plan"]),
    "finetune-plan-gpu-memory-0": Case(["finetune", "model", "--plan", "--gpu-memory-gb", "0"], "input",
                                       ["--gpu-memory-gb"]),
    "finetune-plan-rank-1000": Case(["finetune", "model", "--plan", "--rank", "1000"], "adapter", ["more than", "--rank"]),
    "finetune-over-memory-budget": Case([*FT, "--memory-budget-gb", "0.0001", "--out", "a"], "memory",
                                        ["memory budget", "--memory-budget-gb"]),
    "finetune-resume-other-precision": Case([*FT, "--method", "lora", "--rank", "2", "--precision", "bf16", "--resume",
                                             "--overwrite", "--out", "adapter"], "input",
                                            ["other settings", "precision 'fp32' (now 'bf16')"], finished_finetune),
    "pretrain-precision-fp16-on-cpu": Case([*PRE, "--precision", "fp16", "--device", "cpu", "--out", "m"], "input",
                                           ["fp16", "cuda"]),
    "pretrain-over-memory-budget": Case([*PRE, "--memory-budget-gb", "0.0001", "--out", "m"], "memory",
                                        ["memory budget"]),
    "pretrain-gpu-memory-without-plan": Case([*PRE, "--gpu-memory-gb", "24", "--out", "m"], "input", ["--plan"]),
    "translate-train-gpu-memory-without-plan": Case(["translate-train", "pairs.csv", "--gpu-memory-gb", "24", "--out",
                                                     "t"], "input", ["--gpu-memory-gb", "--plan"]),
    # run job.json
    "job-not-json": Case(["run", "job/job.json"], "input", ["not valid json"], job(None, b"{'version': 1")),
    "job-not-utf8": Case(["run", "job/job.json"], "input", ["utf-8"], job(None, b'{"version": 1, "x": "\xff"}')),
    "job-args-list": Case(["run", "job/job.json"], "input", ["args"], job({"version": 1, "command": "info",
                                                                            "args": ["model"]})),
    "job-command-list": Case(["run", "job/job.json"], "input", ["command"], job({"version": 1, "command": ["info"],
                                                                                  "args": {}})),
    "job-options-null": Case(["run", "job/job.json"], "input", ["options"], job({"version": 1, "command": "info",
                                                                                  "args": {}, "options": None})),
    "job-no-version": Case(["run", "job/job.json"], "input", ["version"], job({"command": "info", "args": {}})),
    "job-version-2": Case(["run", "job/job.json"], "input", ["version"], job({"version": 2, "command": "info",
                                                                               "args": {}})),
    "job-unknown-command": Case(["run", "job/job.json"], "input", ["unknown command"],
                                job({"version": 1, "command": "explode", "args": {}})),
    "job-extra-key": Case(["run", "job/job.json"], "input", ["extra"], job({"version": 1, "command": "info",
                                                                             "args": {}, "extra": 1})),
    "job-option-not-taken": Case(["run", "job/job.json"], "input", ["does not take", "colour"],
                                 job({"version": 1, "command": "info", "args": {"path": "../model", "colour": 3}})),
    "job-nested-value": Case(["run", "job/job.json"], "input", ["args.path"],
                             job({"version": 1, "command": "info", "args": {"path": {"a": 1}}})),
    "job-switch-text": Case(["run", "job/job.json"], "input", ["switch"],
                            job({"version": 1, "command": "info", "args": {"path": "../model", "json": "yes"}})),
    "job-out-is-job-file": Case(["run", "job/job.json"], "input", ["is the input"],
                                job({"version": 1, "command": "evaluate", "options": {"overwrite": True},
                                     "args": {"pred": "../ref.nii.gz", "ref": "../existing.nii.gz", "json": "job.json"}})),
    "job-missing": Case(["run", "nowhere/job.json"], "input", ["cannot read"]),
    # translate-train, translate
    "translate-train-no-contrasts": Case(["translate-train", "cohort.json", "--out", "t"], "input",
                                         ["say which contrasts", "--source"],
                                         text_file("cohort.json", '{"subjects": []}')),
    "translate-train-puzzle-3": Case(["translate-train", "pairs.csv", "--puzzle", "3", "--out", "t"], "input",
                                     ["--puzzle"], text_file("pairs.csv", "source,target\nref.nii.gz,existing.nii.gz\n")),
    "translate-train-timesteps-1": Case(["translate-train", "pairs.csv", "--timesteps", "1", "--out", "t"], "input",
                                        ["--timesteps", "≥ 2"], text_file("pairs.csv", "source,target\nref.nii.gz,existing.nii.gz\n")),
    "translate-train-ema-negative": Case(["translate-train", "pairs.csv", "--ema", "-0.1", "--out", "t"], "input",
                                         ["--ema", "[0, 1)"], text_file("pairs.csv", "source,target\nref.nii.gz,existing.nii.gz\n")),
    "translate-train-not-pairs": Case(["translate-train", "pairs.csv", "--out", "t"], "input", ["not a pairs manifest"],
                                      text_file("pairs.csv", "a,b\n1,2\n")),
    "translate-train-out-is-pair": Case(["translate-train", "pairs.csv", "--out", "ref.nii.gz", "--overwrite"],
                                        "input", ["is the input"],
                                        text_file("pairs.csv", "source,target\nref.nii.gz,existing.nii.gz\n")),
    "translate-train-pair-4d": Case(["translate-train", "pairs.csv", "--out", "t"], "input",
                                    ["s4.nii.gz", "(8, 8, 8, 3)", "3d"],
                                    combined(text_file("pairs.csv", "source,target\nref.nii.gz,s4.nii.gz\n"),
                                             volume_file("s4.nii.gz", np.random.rand(8, 8, 8, 3)))),
    "translate-train-pair-2d": Case(["translate-train", "pairs.csv", "--out", "t"], "input",
                                    ["s2.nii.gz", "(16, 16)", "3d"],
                                    combined(text_file("pairs.csv", "source,target\ns2.nii.gz,ref.nii.gz\n"),
                                             volume_file("s2.nii.gz", np.random.rand(16, 16)))),
    "translate-train-pair-apart": Case(["translate-train", "pairs.csv", "--out", "t"], "input",
                                       ["far.nii.gz covers 0%", "ref.nii.gz", "same subject"],
                                       combined(text_file("pairs.csv", "source,target\nref.nii.gz,far.nii.gz\n"),
                                                volume_file("far.nii.gz", np.random.rand(8, 8, 8), FAR_RIGHT))),
    # the source is read (and refused) before the model, so the sandbox's synthesis model stands in for one
    "translate-source-4d": Case(["translate", "model", "s4.nii.gz", "--out", "t.nii.gz"], "input",
                                ["s4.nii.gz", "(8, 8, 8, 3)", "3d"], volume_file("s4.nii.gz", np.random.rand(8, 8, 8, 3))),
    "translate-source-2d": Case(["translate", "model", "s2.nii.gz", "--samples", "2", "--out", "t.nii.gz"], "input",
                                ["s2.nii.gz", "(16, 16)", "3d"], volume_file("s2.nii.gz", np.random.rand(16, 16))),
    "translate-synthesis-model": Case(["translate", "model", "ref.nii.gz", "--out", "t.nii.gz"], "model",
                                      ["synthesis model", "diffusion-peft synthesize"]),
    "translate-out-is-source": Case(["translate", "model", "ref.nii.gz", "--out", "ref.nii.gz", "--overwrite"],
                                    "input", ["is the input"]),
    "translate-samples-0": Case(["translate", "model", "ref.nii.gz", "--samples", "0", "--out", "t.nii.gz"], "input",
                                ["--samples"]),
    "translate-eta-2": Case(["translate", "model", "ref.nii.gz", "--eta", "2", "--out", "t.nii.gz"], "input", ["--eta"]),
    "translate-std-exists": Case(["translate", "model", "ref.nii.gz", "--samples", "2", "--out", "t.nii.gz"], "input",
                                 ["t_std.nii.gz", "already exists"], volume_file("t_std.nii.gz", np.random.rand(8, 8, 8))),
    # reconstruct
    "reconstruct-out-is-source": Case(["reconstruct", "model", "ref.nii.gz", "--out", "ref.nii.gz", "--overwrite"],
                                      "input", ["is the input"]),
    "reconstruct-acceleration-half": Case(["reconstruct", "model", "ref.nii.gz", "--acceleration", "0.5", "--out",
                                           "r.nii.gz"], "input", ["acceleration 0.5", "at least 1"]),
    "reconstruct-acceleration-absurd": Case(["reconstruct", "model", "ref.nii.gz", "--acceleration", "1000", "--out",
                                             "r.nii.gz"], "input", ["fewer than 2"]),
    "reconstruct-method-unknown": Case(["reconstruct", "model", "ref.nii.gz", "--method", "unet", "--out", "r.nii.gz"],
                                       "input", ["--method"]),
    "reconstruct-kspace-without-mask": Case(["reconstruct", "model", "k.npy", "--kspace", "--out", "r.nii.gz"],
                                            "input", ["--mask-file"], text_file("k.npy")),
    "reconstruct-kspace-not-npy": Case(["reconstruct", "model", "k.npy", "--kspace", "--mask-file", "m.npy", "--out",
                                        "r.nii.gz"], "input", ["cannot read k.npy"],
                                       combined(text_file("k.npy"), text_file("m.npy"))),
    "reconstruct-zerofilled-exists": Case(["reconstruct", "model", "ref.nii.gz", "--out", "r.nii.gz"], "input",
                                          ["r_zerofilled.nii.gz", "already exists"],
                                          volume_file("r_zerofilled.nii.gz", np.random.rand(8, 8, 8))),
    "reconstruct-complex-volume": Case(["reconstruct", "model", "c.nii.gz", "--out", "r.nii.gz"], "input",
                                       ["complex-valued", "magnitude", "--kspace"],
                                       volume_file("c.nii.gz", np.ones((8, 8, 8)) * (1 + 1j), dtype=np.complex64)),
    "reconstruct-magnitude-as-kspace": Case(["reconstruct", "model", "k.npy", "--kspace", "--mask-file", "m.npy",
                                             "--out", "r.nii.gz"], "input", ["real numbers", "complex"],
                                            combined(npy_file("k.npy", np.ones((16, 16, 16), np.float32)),
                                                     npy_file("m.npy", np.ones((16, 16), np.uint8)))),
    # simulate, demo, assess
    "simulate-out-user-folder": Case(["simulate", "--n", "2", "--out", "notes", "--overwrite"], "input",
                                     ["did not write"]),
    "simulate-contrast-unknown": Case(["simulate", "--contrasts", "dwi", "--out", "c"], "input", ["dwi"]),
    "demo-out-user-folder": Case(["demo", "--out", "notes", "--overwrite"], "input", ["did not write"]),
    "demo-one-subject": Case(["demo", "--train-subjects", "1", "--out", "d"], "input", ["--train-subjects", "≥ 2"]),
    "demo-method-unknown": Case(["demo", "--method", "qlora", "--out", "d"], "input", ["--method"]),
    "assess-out-is-data": Case(["assess", "model", "scans", "--out", "scans", "--overwrite"], "input",
                               ["is the input"]),
    "assess-n-0": Case(["assess", "model", "scans", "--n", "0", "--out", "a"], "input", ["--n"]),
    "assess-n-1": Case(["assess", "model", "scans", "--n", "1", "--out", "a"], "input", ["--n", "≥ 2"]),
    # benchmark-paradigms
    "paradigms-out-exists": Case([*BP, "--out", "notes"], "input", ["already exists"]),
    "paradigms-out-user-folder": Case([*BP, "--out", "notes", "--overwrite"], "input", ["did not write"]),
    "paradigms-out-other-output": Case([*BP, "--out", "adapter", "--overwrite"], "input",
                                       ["not a benchmark-paradigms study", "new --out"], trained_adapter),
    "paradigms-out-inside-model": Case([*BP, "--out", "model/study"], "input", ["inside the input"]),
    "paradigms-model-not-a-package": Case(["benchmark-paradigms", "--model", "scans", "--out", "s"], "model",
                                          ["model.json is missing"]),
    "paradigms-method-unknown": Case([*BP, "--methods", "lora", "qlora", "--out", "s"], "input", ["--methods", "qlora"]),
    "paradigms-seeds-0": Case([*BP, "--seeds", "0", "--out", "s"], "input", ["--seeds", "≥ 1"]),
    "paradigms-budget-0": Case([*BP, "--budgets", "40", "0", "--out", "s"], "input", ["--budgets", "≥ 1"]),
    "paradigms-atrophy-above-1": Case([*BP, "--atrophy", "0:0.2", "0.8:1.5", "--out", "s"], "input", ["--atrophy", "[0, 1]"]),
    "paradigms-heldout-1": Case([*BP, "--heldout-per-class", "1", "--out", "s"], "input", ["--heldout-per-class", "≥ 2"]),
    "paradigms-rank-1000": Case([*BP, "--methods", "lora", "--rank", "1000", "--out", "s"], "adapter", ["more than", "--rank"]),
    "paradigms-isolate-unknown": Case([*BP, "--isolate", "thread", "--out", "s"], "input", ["--isolate"]),
    "paradigms-study-other-settings": Case([*BP, "--out", "study"], "input", ["other settings", "target", "another --out"],
                                           study_folder({"target": "flair"})),
    "paradigms-study-damaged": Case([*BP, "--out", "study"], "input", ["damaged", "another --out"], study_folder(None)),
}


def test_the_suite_covers_every_command_with_at_least_60_cases():
    from DiffusionPEFTLib.cli import command_modules

    commands = {(c.values[0] if hasattr(c, "values") else c).argv[0] for c in CASES.values()}
    assert commands == {*command_modules(), "run"}
    assert len(CASES) >= 60


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_mistake_is_reported_and_touches_nothing(tmp_path, tiny_model_dir, monkeypatch, case):
    root = make_sandbox(tmp_path / "user", tiny_model_dir)
    if case.setup:
        case.setup(root)
    monkeypatch.chdir(root)
    for name, value in case.env.items():
        monkeypatch.setenv(name, value)
    before = snapshot(root)
    code, events = run_cli(*case.argv)
    errors = events.of("error")
    assert code != 0 and len(errors) == 1, events.events
    error = errors[0]
    assert error["kind"] == case.kind, error
    assert error["message"] and error["hint"] and "bug" not in error["hint"].lower(), error
    text = (error["message"] + " " + error["hint"]).lower()
    assert all(word.lower() in text for word in case.words), error
    assert not events.of("done")
    assert snapshot(root) == before
