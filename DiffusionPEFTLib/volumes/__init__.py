"""Volumes with geometry: ``Volume`` = array indexed [i, j, k] + 4×4 RAS affine (nibabel convention)."""

from .volume import Volume, check_volume
from .io import read_volume, write_volume, VOLUME_SUFFIXES
from .grid import GridMapping, field_of_view_overlap, model_grid_affine, resample, to_model_grid, from_model_grid
from .intensity import IntensityNormalisation, NormalisationParams
from .slicer_geometry import from_slicer_array, to_slicer_array

__all__ = [
    "Volume", "check_volume", "read_volume", "write_volume", "VOLUME_SUFFIXES", "GridMapping",
    "field_of_view_overlap", "model_grid_affine", "resample", "to_model_grid", "from_model_grid", "IntensityNormalisation",
    "NormalisationParams", "from_slicer_array", "to_slicer_array",
]
