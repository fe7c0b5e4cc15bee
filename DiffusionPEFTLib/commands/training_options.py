"""What the training commands (pretrain, finetune, translate-train) share: their data, optimisation and
U-Net options, and the check of their checkpoint (work) folder."""

from __future__ import annotations

from pathlib import Path

from ..adapters.plan import build_unet_on_meta
from ..errors import InputError, ModelError
from ..files import Output, check_apart, check_outputs, is_work_folder
from ..training import CHECKPOINT_NAME
from ..training.streaming import LOADINGS, DataLoading
from .memory_options import add_memory_arguments
from .option_types import float_in, fraction, non_negative_int, positive_float, positive_int


def add_data_arguments(parser, required: bool = True) -> None:
    """Training-data options of ``pretrain`` and ``finetune``."""
    parser.add_argument("data", nargs="+" if required else "*", help="folders, volume files, or manifests (.json/.csv/.txt)")
    parser.add_argument("--pattern", default=None, help="in folders, only files matching this glob (e.g. '*/t1.nii.gz')")
    parser.add_argument("--contrast", default=None, help="with a simulator manifest: which contrast to use")
    add_validation_arguments(parser)


def add_validation_arguments(parser, val_fraction: float = 0.1) -> None:
    parser.add_argument("--val-fraction", type=fraction, default=val_fraction,
                        help="share of volumes held out for validation, in [0, 1)")
    parser.add_argument("--val-every", type=non_negative_int, default=0, help="validate every N steps (0: never)")


def add_weight_average_argument(parser) -> None:
    """``--ema DECAY`` of ``pretrain`` and ``translate-train``."""
    parser.add_argument("--ema", type=float_in(0.0, 1.0, high_open=True), default=None, metavar="DECAY",
                        help="write an exponential moving average of the weights with this decay (e.g. 0.999) "
                        "instead of the last ones. It spans about 1/(1 - DECAY) steps, so use it for runs several "
                        "times longer (0.999: thousands of steps); on short runs it lags behind the weights. "
                        "Default: the last weights")


def add_training_arguments(parser, steps: int, lr: float | None, lr_help: str = "AdamW learning rate") -> None:
    """Optimisation and checkpoint options."""
    parser.add_argument("--steps", type=positive_int, default=steps, help="optimizer steps")
    parser.add_argument("--batch", type=positive_int, default=1, help="volumes per micro-batch")
    parser.add_argument("--accum", type=positive_int, default=1, help="gradient accumulation: micro-batches per step")
    parser.add_argument("--lr", type=positive_float, default=lr, help=lr_help)
    parser.add_argument("--checkpoint-every", type=non_negative_int, default=100,
                        help="write a checkpoint every N steps (0: only at the end and on cancel)")
    parser.add_argument("--no-augment", action="store_true", help="no flips / contrast jitter")
    parser.add_argument("--resume", action="store_true", help="continue from the checkpoint in the work folder")
    parser.add_argument("--workdir", default=None, help="checkpoints and logs (default: OUT.work next to OUT)")
    add_memory_arguments(parser)
    add_data_loading_arguments(parser)


def add_data_loading_arguments(parser) -> None:
    """How the training volumes reach the trainer (training/streaming.py)."""
    parser.add_argument("--data-loading", choices=LOADINGS, default="memory",
                        help="memory: every volume held in memory; stream: read as needed (MONAI Dataset); cache: "
                        "as many as half the memory budget holds kept in memory, the rest read as needed; "
                        "persistent: read once, kept on the model grid in the work folder's data-cache. Batches, "
                        "results and --resume are the same for all four")
    parser.add_argument("--workers", type=non_negative_int, default=0,
                        help="with a streaming --data-loading: processes reading volumes ahead (0: none)")


def data_loading(args) -> DataLoading:
    loading = DataLoading(args.data_loading, args.workers)
    loading.check()
    return loading


def add_architecture_arguments(parser, shape: list[int], spacing: float) -> None:
    """The model grid and the U-Net's widths, attention and normalisation."""
    parser.add_argument("--shape", type=positive_int, nargs=3, default=shape, metavar=("X", "Y", "Z"),
                        help="model grid in voxels along R, A, S")
    parser.add_argument("--spacing", type=positive_float, nargs="+", default=[spacing], help="mm; one value or three")
    parser.add_argument("--channels", type=positive_int, nargs="+", default=[32, 64, 64])
    parser.add_argument("--attention-levels", type=int, choices=[0, 1], nargs="+", default=[0, 0, 1],
                        help="1 = self-attention at that level, one value per channel level")
    parser.add_argument("--num-res-blocks", type=positive_int, default=1)
    parser.add_argument("--head-channels", type=positive_int, default=64, help="channels per attention head")
    parser.add_argument("--norm-groups", type=positive_int, default=32)


def grid_spacing(args) -> tuple[float, float, float]:
    if len(args.spacing) not in (1, 3):
        raise InputError(f"--spacing takes one or three values, not {len(args.spacing)}.", hint="E.g. --spacing 6.")
    return tuple(float(s) for s in (args.spacing * 3 if len(args.spacing) == 1 else args.spacing))


def unet_arguments(args, in_channels: int, out_channels: int) -> dict:
    """DiffusionModelUNet keyword arguments from the architecture options, proven to build."""
    levels = len(args.channels)
    if len(args.attention_levels) != levels:
        raise InputError("--attention-levels needs one value per channel level.",
                         hint=f"With {levels} levels: e.g. --attention-levels {' '.join(['0'] * (levels - 1))} 1.")
    # the middle block always attends, with the last level's head size, so that level always gets one
    heads = [args.head_channels if a or level == levels - 1 else 0 for level, a in enumerate(args.attention_levels)]
    unet = {
        "spatial_dims": 3, "in_channels": in_channels, "out_channels": out_channels, "channels": list(args.channels),
        "attention_levels": [bool(a) for a in args.attention_levels], "num_res_blocks": args.num_res_blocks,
        "num_head_channels": heads, "norm_num_groups": args.norm_groups, "use_flash_attention": True,
    }
    try:
        build_unet_on_meta(unet)
    except ModelError as error:
        raise InputError(error.message.replace("in model.json ", "given by the options "),
                         hint="Every --channels value must be a multiple of --norm-groups and, where attention "
                         "is on (and at the last level), of --head-channels.") from None
    return unet


def work_folder_of(args) -> Path:
    return Path(args.workdir or f"{args.out}.work")


def check_work_folder(workdir: Path, inputs: list, resume: bool, overwrite: bool) -> None:
    """The checkpoint folder obeys the output rule; an earlier run's checkpoint is continued only with
    --resume and restarted only with --overwrite."""
    check_apart(workdir, inputs)
    if not workdir.exists():
        check_outputs([Output(workdir, folder=True)], (), overwrite=False)
    elif not is_work_folder(workdir):
        raise InputError(f"{workdir} exists and is not a DiffusionPEFT work folder.",
                         hint="Give --workdir a new folder (or leave it out).")
    elif (workdir / CHECKPOINT_NAME).exists() and not (resume or overwrite):
        raise InputError(f"{workdir} holds the checkpoint of an earlier run.",
                         hint="Add --resume to continue it, --overwrite to start over, or choose another --workdir.")
