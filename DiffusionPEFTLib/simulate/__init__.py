"""Anatomy-based multi-contrast MRI cohort simulator (ICBM152 2009a tissue maps → T1w, T2w, PD, FLAIR).

    from DiffusionPEFTLib.simulate import simulate_subject, simulate_cohort
    subject = simulate_subject(seed=0, shape=(32, 40, 32), spacing=6.0, contrasts="t1,flair", atrophy=0.4)
    subject.images["t1"]        # Volume, on the same grid as every other image and label map

See docs/simulator.md for the model, the equations and the parameter values; k-space and coils are
in :mod:`DiffusionPEFTLib.reconstruction.kspace`.
"""

from .anatomy import load_anatomy, resources_dir
from .cohort import parse_atrophy, simulate_cohort, subject_seed, write_cohort
from .contrasts import SEQUENCES, TISSUE_RELAXATION, parse_contrasts
from .deformation import AnatomyVariation
from .lesions import LESION_TYPES
from .subject import LESION_LABELS, TISSUE_LABELS, Subject, check_subject_options, simulate_subject

__all__ = [
    "load_anatomy", "resources_dir", "parse_atrophy", "simulate_cohort", "subject_seed", "write_cohort",
    "SEQUENCES", "TISSUE_RELAXATION", "parse_contrasts", "AnatomyVariation", "LESION_TYPES", "LESION_LABELS", "TISSUE_LABELS",
    "Subject", "check_subject_options", "simulate_subject",
]
