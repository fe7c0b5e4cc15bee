"""Sub-commands of ``diffusion-peft``. Each module defines NAME, HELP, add_arguments(parser),
paths(args) -> (inputs, outputs) for the output rule, and run(args, context) -> list of output paths.
Add a command by adding its module name here."""

COMMAND_MODULES = [
    "pretrain",
    "synthesize",
    "evaluate",
    "info",
    "import_checkpoint",
    "import_bundle",
    "assess",
    "finetune",
    "demo",
    "simulate",
    "translate_train",
    "translate",
    "reconstruct",
    "benchmark_paradigms",
]
