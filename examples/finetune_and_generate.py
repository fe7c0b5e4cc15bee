"""Fine-tune an adapter on a few volumes, synthesize like a reference, and score the result — no GUI.

Run with Slicer (the DiffusionPEFT extension installed, or its source folder added as a module path):

    Slicer --no-main-window --python-script examples/finetune_and_generate.py \\
        --model /path/to/model-package --train t1_001.nii.gz t1_002.nii.gz t1_003.nii.gz \\
        --reference t1_004.nii.gz --method tenvoo-l --rank 4 --steps 200 --out results/

    (from a source checkout add: --additional-module-paths /path/to/repo/DiffusionPEFT)

Writes results/adapter/ (the adapter package), results/<reference> synthesized*.nii.gz and
results/metrics.json; exits with 0 on success, 1 with the error message and hint otherwise.
"""

import argparse
import json
import pathlib
import shutil
import sys

import slicer


def parseArguments(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="model package folder or .zip")
    parser.add_argument("--train", nargs="+", required=True, help="training volumes (NIfTI, NRRD, …)")
    parser.add_argument("--reference", required=True, help="outputs take this volume's grid and intensity scale")
    parser.add_argument("--method", default="tenvoo-l")
    parser.add_argument("--rank", type=int, default=4)
    parser.add_argument("--targets", default="tenvoo")
    parser.add_argument("--steps", type=int, default=200, help="fine-tuning steps")
    parser.add_argument("--lr", type=float, default=0.0, help="learning rate (0 = the method's own default)")
    parser.add_argument("--count", type=int, default=1, help="volumes to synthesize")
    parser.add_argument("--sampling-steps", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", required=True, help="results folder")
    return parser.parse_args(argv)


def main(argv) -> int:
    import DiffusionPEFT
    from DiffusionPEFTSlicer.job_result import JobFailed

    args = parseArguments(argv)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    logic = DiffusionPEFT.DiffusionPEFTLogic()
    logic.logCallback = print
    logic.progressCallback = lambda event: print(f"{event['stage']} {event['step']}/{event['total']}"
                                                 + (f" loss {event['loss']:.4g}" if "loss" in event else ""))
    try:
        training = [slicer.util.loadVolume(path) for path in args.train]
        reference = slicer.util.loadVolume(args.reference)
        fineTune = logic.fineTune(training, args.model, method=args.method, rank=args.rank, targets=args.targets,
                                  steps=args.steps, learningRate=args.lr, seed=args.seed, device=args.device)
        adapter = shutil.copytree(fineTune.result.adapterPath, out / "adapter", dirs_exist_ok=True)
        synthesized = logic.synthesize(args.model, reference, adapterPath=adapter, count=args.count,
                                       steps=args.sampling_steps, seed=args.seed, device=args.device).result.nodes
        for node in synthesized:
            slicer.util.saveNode(node, str(out / f"{node.GetName()}.nii.gz"))
        metrics = logic.compare(reference, synthesized[0]).result.metrics
    except (JobFailed, ValueError) as error:
        print(f"Failed: {error}", file=sys.stderr)
        return 1
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    print(json.dumps(metrics, indent=2))
    return 0


if __name__ == "__main__":
    slicer.util.exit(main(sys.argv[1:]))
