"""One simulated subject: template anatomy → pose + warp → atrophy → lesions → contrasts → bias, noise.

Every random step draws from its own stream, seeded by (seed, step name), so a subject simulated
with and without lesions, or with more contrasts, shares everything else voxel for voxel.
"""

from __future__ import annotations

import inspect
import math
import zlib
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..errors import InputError
from ..volumes import Volume, model_grid_affine
from .anatomy import antialiased_maps, load_anatomy
from .atrophy import apply_atrophy
from .contrasts import SEQUENCES, parse_contrasts, render_contrast
from .deformation import AnatomyVariation, random_pose, random_warp, template_coordinates
from .lesions import LESION_CLASSES, LESION_TYPES, add_lesions
from .noise import bias_field, complex_image, smooth_phase

NORMAL_CLASSES = ("csf", "gm", "wm", "ventricles")
TISSUE_LABELS = {"background": 0, "csf": 1, "gm": 2, "wm": 3, "ventricles": 4}
LESION_LABELS = {"none": 0, "tumour_core": 1, "oedema": 2, "wmh": 3}
MAX_VOXELS = 256**3


@dataclass(frozen=True)
class Subject:
    """A simulated subject on one grid (all volumes share ``affine`` and ``shape``).

    images:          contrast → magnitude Volume (float32, brightest normal tissue ≈ 1 before bias).
    complex_images:  contrast → complex64 (I, J, K); images = |complex_images|.
    fractions:       tissue class → float32 (I, J, K) volume fraction (classes in TISSUE_RELAXATION).
    tissue_labels:   Volume of TISSUE_LABELS: the largest normal-tissue fraction before lesions
                     (0 where the brain fills < 50 % of the voxel).
    lesion_labels:   Volume of LESION_LABELS (largest lesion class where lesions fill ≥ 50 % of a voxel).
    params:          JSON-ready record of everything drawn and measured (volumes in mL).
    """

    images: dict[str, Volume]
    complex_images: dict[str, np.ndarray]
    fractions: dict[str, np.ndarray]
    tissue_labels: Volume
    lesion_labels: Volume
    params: dict

    @property
    def affine(self) -> np.ndarray:
        return self.tissue_labels.affine

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.tissue_labels.shape


def random_stream(seed: int, step: str) -> np.random.Generator:
    """Independent generator for one random step of one subject."""
    return np.random.default_rng([seed, zlib.crc32(step.encode())])


def three_values(value) -> tuple:
    """A scalar repeated three times, a 3-sequence as a tuple; anything else as it is (checks then fail)."""
    values = tuple(np.atleast_1d(np.asarray(value, dtype=object)).tolist())
    return values * 3 if len(values) == 1 else values


def check_options(seed, shape, spacing, contrasts, atrophy, lesions, snr, bias_strength) -> dict:
    """Validate simulation options; return them normalised (shape 3 ints, spacing 3 floats, …)."""
    def fail(message: str, hint: str):
        raise InputError(message, hint=hint)

    if not isinstance(seed, (int, np.integer)) or seed < 0:
        fail(f"Seed {seed!r} is not a non-negative integer.", "Give a seed such as 0, 1, 42.")
    shape = three_values(shape)
    if len(shape) != 3 or not all(isinstance(s, (int, np.integer)) and s >= 4 for s in shape) \
            or math.prod(shape) > MAX_VOXELS:
        fail(f"Shape {shape} is not three whole numbers of at least 4 voxels (at most {MAX_VOXELS} in all).",
             "Use for example --shape 32 40 32.")
    spacing = three_values(spacing)
    if len(spacing) != 3 or not all(
            isinstance(s, (int, float, np.number)) and math.isfinite(s) and 0.5 <= s <= 20.0 for s in spacing):
        fail(f"Spacing {spacing} mm is not three values within 0.5–20 mm.",
             "Use for example --spacing 6 (isotropic) or 4 4 5.")
    if not (isinstance(atrophy, (int, float)) and 0.0 <= atrophy <= 1.0):
        fail(f"Atrophy {atrophy!r} is outside [0, 1].", "0 is a young brain, 1 strong age-like atrophy.")
    if lesions not in LESION_TYPES:
        fail(f"Unknown lesion type {lesions!r}.", f"Use one of: {', '.join(LESION_TYPES)}.")
    if snr is not None and not (snr > 0):
        fail(f"SNR {snr!r} is not positive.", "Use for example 30; inf (or None in Python) for no noise.")
    if not (isinstance(bias_strength, (int, float)) and 0.0 <= bias_strength <= 1.0):
        fail(f"Bias field strength {bias_strength!r} is outside [0, 1].", "Use for example 0.15, or 0 for none.")
    return {"seed": int(seed), "shape": tuple(int(s) for s in shape), "spacing": tuple(float(s) for s in spacing),
            "contrasts": parse_contrasts(contrasts), "atrophy": float(atrophy), "lesions": lesions,
            "snr": None if snr is None or math.isinf(snr) else float(snr), "bias_strength": float(bias_strength)}


def simulate_subject(seed: int, shape=(32, 40, 32), spacing=6.0, contrasts=("t1",), atrophy: float = 0.0,
                     lesions: str = "none", snr: float | None = 40.0, bias_strength: float = 0.15,
                     variation: AnatomyVariation = AnatomyVariation()) -> Subject:
    """Simulate one subject on a RAS-aligned grid of ``shape`` × ``spacing`` mm centred on the brain.

    contrasts: names in SEQUENCES ('t1', 't2', 'pd', 'flair') or 't1,t2'. atrophy A ∈ [0, 1].
    lesions: 'none', 'tumour' or 'wmh'. snr: 1/σ of the Rician noise (None or inf: no noise).
    bias_strength: std of the log bias field (0: none). variation: spread of pose and warp.
    Same arguments → identical arrays.
    """
    options = check_options(seed, shape, spacing, contrasts, atrophy, lesions, snr, bias_strength)
    seed, shape, spacing = options["seed"], options["shape"], options["spacing"]
    grid_affine = model_grid_affine(load_anatomy().brain_centre, shape, spacing)
    normal, ventricle_distance, pose = subject_anatomy(seed, grid_affine, shape, spacing, options["atrophy"], variation)
    fractions, lesion_params = add_lesions(options["lesions"], random_stream(seed, "lesions"), normal, spacing,
                                           ventricle_distance)
    bias = bias_field(random_stream(seed, "bias"), shape, options["bias_strength"])
    phase = smooth_phase(random_stream(seed, "phase"), shape)
    complex_images = {
        contrast: complex_image(render_contrast(fractions, contrast), bias, phase,
                                random_stream(seed, f"noise/{contrast}"), options["snr"])
        for contrast in options["contrasts"]
    }
    voxel_ml = float(np.prod(spacing)) / 1000.0
    params = {
        **options, "shape": list(shape), "spacing": list(spacing), "contrasts": list(options["contrasts"]),
        "affine": grid_affine.tolist(), "variation": variation.as_dict(), "pose": pose, "lesion": lesion_params,
        "volumes_ml": {name: round(float(value.sum()) * voxel_ml, 3) for name, value in fractions.items()},
        "sequences": {c: SEQUENCES[c].as_dict() for c in options["contrasts"]},
    }
    return Subject(
        images={c: Volume(np.abs(image), grid_affine) for c, image in complex_images.items()},
        complex_images=complex_images,
        fractions=fractions,
        tissue_labels=Volume(label_map(normal, NORMAL_CLASSES, TISSUE_LABELS), grid_affine),
        lesion_labels=Volume(label_map(fractions, LESION_CLASSES, LESION_LABELS), grid_affine),
        params=params,
    )


def subject_anatomy(seed: int, grid_affine, shape, spacing, atrophy: float, variation: AnatomyVariation):
    """Normal tissue fractions of the subject on the output grid (after pose, warp and atrophy).

    Returns (fractions: class → float32 (I, J, K) for NORMAL_CLASSES, ventricle distance in mm
    (I, J, K), pose dict)."""
    anatomy = load_anatomy()
    rng = random_stream(seed, "geometry")
    pose = random_pose(rng, variation)
    warp = random_warp(rng, shape, spacing, variation)
    coordinates = template_coordinates(grid_affine, shape, warp, pose, anatomy.brain_centre, anatomy.affine)

    def sample(data: np.ndarray, mode: str = "constant") -> np.ndarray:
        return ndimage.map_coordinates(data, coordinates, order=1, mode=mode).astype(np.float32)

    maps = {name: np.clip(sample(data), 0.0, 1.0) for name, data in antialiased_maps(spacing).items()}
    ventricle_distance = sample(anatomy.ventricle_distance, "nearest")
    fractions = {
        "csf": np.maximum(maps["csf"] - maps["lateral_ventricles"], 0.0),
        "gm": maps["gm"], "wm": maps["wm"], "ventricles": maps["lateral_ventricles"],
    }
    fractions = apply_atrophy(fractions, ventricle_distance, sample(anatomy.cortical_depth, "nearest"), atrophy)
    return fractions, ventricle_distance, pose


def check_subject_options(**options) -> dict:
    """Check keyword options of :func:`simulate_subject` (defaults filled in) without simulating."""
    try:
        bound = inspect.signature(simulate_subject).bind(**{"seed": 0, **options})
    except TypeError as error:
        raise InputError(f"Invalid simulation option: {error}.", hint="See simulate_subject's arguments.") from None
    bound.apply_defaults()
    names = inspect.signature(check_options).parameters
    return check_options(**{name: bound.arguments[name] for name in names})


def label_map(fractions: dict, classes, labels: dict) -> np.ndarray:
    """Label of the class with the largest fraction among ``classes`` where those classes fill at
    least half the voxel; 0 elsewhere. float32 (I, J, K)."""
    present = [name for name in classes if name in fractions]
    if not present:
        return np.zeros(next(iter(fractions.values())).shape, dtype=np.float32)
    stack = np.stack([fractions[name] for name in present])
    filled = stack.sum(axis=0)
    codes = np.asarray([labels[name] for name in present], dtype=np.float32)
    return np.where(filled >= 0.5, codes[stack.argmax(axis=0)], 0.0).astype(np.float32)
