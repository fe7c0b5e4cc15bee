"""Record the training sources' intensity signature in a translation package made before signatures existed.

``translate-train`` stores the signature itself (translation/contrast_check.py); the shipped T1w → FLAIR package
(scripts/build_translation_model.sh) was trained earlier, so ``translate`` could not warn about a source of
another contrast. This computes the signature from the same training sources, loaded onto the model grid by the
same per-volume loader as training, and writes it into model.json (atomically; the weights and their checksum
are untouched).

Usage: python scripts/sign_translation_model.py MODEL_DIR MANIFEST [--contrast t1]
(MANIFEST: the simulator cohort the model was trained on; for the shipped model
``diffusion-peft simulate --n 160 --contrasts t1 --atrophy 0:0.5 --lesions none --shape 64 80 64 --spacing 3
--seed 7000`` gives the same T1w volumes as its training cohort.)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from DiffusionPEFTLib.files import write_text_atomic  # noqa: E402
from DiffusionPEFTLib.training.data import find_volume_files, load_training_item  # noqa: E402
from DiffusionPEFTLib.translation.contrast_check import source_signature  # noqa: E402
from DiffusionPEFTLib.translation.model import load_translation_model  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("manifest", type=Path)
    parser.add_argument("--contrast", default=None, help="the sources' contrast (default: the model's source)")
    args = parser.parse_args()
    model = load_translation_model(args.model)
    spec = model.config.input
    files = find_volume_files([args.manifest], contrast=args.contrast or model.spec.source)
    sources = (load_training_item(path, spec)[0][0].numpy() for path in files)
    signature = source_signature(sources, spec.normalisation().range, spec.spacing)
    path = args.model / "model.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    config["translation"]["source_signature"] = signature.to_dict()
    write_text_atomic(path, json.dumps(config, indent=2), overwrite=True)
    print(f"{len(files)} sources: signature recorded in {path}, threshold {signature.threshold:.4f}")


if __name__ == "__main__":
    main()
