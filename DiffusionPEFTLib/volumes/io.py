"""Read and write volumes: NIfTI through nibabel (RAS), NRRD/MHA/MHD through SimpleITK (LPS ↔ RAS)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DiffusionPEFTError, InputError
from ..files import atomic_output
from ..memory import MemoryBudget
from .volume import Volume, check_volume

NIFTI_SUFFIXES = (".nii", ".nii.gz")
ITK_SUFFIXES = (".nrrd", ".nhdr", ".mha", ".mhd")
VOLUME_SUFFIXES = NIFTI_SUFFIXES + ITK_SUFFIXES

# RAS = diag(-1, -1, 1) · LPS
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def volume_suffix(path: str | Path) -> str:
    """The recognised volume extension of ``path`` (lower case), or raise InputError."""
    name = Path(path).name.lower()
    for suffix in sorted(VOLUME_SUFFIXES, key=len, reverse=True):
        if name.endswith(suffix):
            return suffix
    raise InputError(
        f"{path} is not a volume file this tool reads.",
        hint=f"Use one of: {', '.join(VOLUME_SUFFIXES)}.",
    )


def read_volume(path: str | Path, budget: MemoryBudget | None = None, check: bool = True) -> Volume:
    """Load a 3D volume as float32 [i, j, k] + RAS affine.

    The header is read first so a volume too large for ``budget`` is refused before its voxels
    are loaded. With ``check`` the volume must pass :func:`check_volume`.
    """
    path = Path(path)
    suffix = volume_suffix(path)
    if not path.is_file():
        raise InputError(f"Volume file not found: {path}", hint="Check the path and file name.")
    try:
        if suffix in NIFTI_SUFFIXES:
            volume = _read_nifti(path, budget)
        else:
            volume = _read_itk(path, budget)
    except DiffusionPEFTError:
        raise
    except Exception as exc:  # nibabel / SimpleITK raise many types for damaged files
        raise InputError(
            f"Cannot read {path.name}: the file is damaged or not a {suffix} volume ({type(exc).__name__}).",
            hint="Re-export the volume from its source (for example Slicer: Save as NIfTI or NRRD).",
        ) from None
    return check_volume(volume, path.name) if check else volume


def _check_size(shape, budget: MemoryBudget | None, path: Path) -> None:
    if budget is not None:
        budget.check(
            float(np.prod(shape)) * 4 * 3,
            f"Loading {path.name} ({'×'.join(str(s) for s in shape)} voxels)",
            hint="Crop or downsample the volume first.",
        )


def read_volume_header(path: str | Path) -> tuple[int, ...]:
    """The voxel grid size of a volume file, read from its header only (raises on a damaged file)."""
    path = Path(path)
    if volume_suffix(path) in NIFTI_SUFFIXES:
        import nibabel as nib

        return tuple(nib.load(str(path)).shape)
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.ReadImageInformation()
    return tuple(reader.GetSize())


def _refuse_complex(path: Path, complex_valued: bool) -> None:
    if complex_valued:
        raise InputError(f"{path.name} holds complex-valued voxels; this command needs a real-valued image.",
                         hint="Save the magnitude image (|z|); complex k-space goes to 'diffusion-peft "
                         "reconstruct MODEL KSPACE.npy --kspace --mask-file MASK.npy'.")


def _read_nifti(path: Path, budget: MemoryBudget | None) -> Volume:
    import nibabel as nib

    image = nib.load(str(path))
    _check_size(image.shape, budget, path)
    _refuse_complex(path, np.issubdtype(image.get_data_dtype(), np.complexfloating))
    data = np.asarray(image.get_fdata(dtype=np.float32))
    return Volume(data, image.affine)


def _read_itk(path: Path, budget: MemoryBudget | None) -> Volume:
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.ReadImageInformation()
    shape = reader.GetSize()
    _check_size(shape, budget, path)
    _refuse_complex(path, "complex" in sitk.GetPixelIDValueAsString(reader.GetPixelID()))
    if reader.GetNumberOfComponents() != 1 and len(shape) == 3:
        raise InputError(
            f"{path.name} has {reader.GetNumberOfComponents()} components per voxel; a scalar volume is needed.",
            hint="Extract one channel first.",
        )
    image = reader.Execute()
    if image.GetDimension() == 4 and image.GetSize()[3] == 1:  # a 3D scan stored with a singleton 4th axis
        image = sitk.Extract(image, [*image.GetSize()[:3], 0], [0, 0, 0, 0],
                             sitk.ExtractImageFilter.DIRECTIONCOLLAPSETOSUBMATRIX)
    data = sitk.GetArrayFromImage(image).astype(np.float32)  # [k, j, i]
    data = np.transpose(data, tuple(range(data.ndim))[::-1])  # -> [i, j, k]
    if image.GetDimension() != 3:
        return Volume(data, np.eye(4))  # check_volume reports the wrong dimensionality
    return Volume(data, itk_affine(image))


def itk_affine(image) -> np.ndarray:
    """RAS affine of a SimpleITK image (which stores LPS origin, spacing and direction)."""
    direction = np.asarray(image.GetDirection(), dtype=np.float64).reshape(3, 3)
    lps = np.eye(4)
    lps[:3, :3] = direction * np.asarray(image.GetSpacing())
    lps[:3, 3] = image.GetOrigin()
    return LPS_TO_RAS @ lps


NOTE_KEY = "DiffusionPEFT_note"  # the metadata key of a description in NRRD/MHA headers
NIFTI_DESCRIPTION_BYTES = 79  # the NIfTI-1 header's descrip field: 80 bytes, NUL-terminated


def write_volume(volume: Volume, path: str | Path, overwrite: bool = False, description: str | None = None) -> Path:
    """Write atomically (temporary name, then rename); the format follows the extension.

    An existing file is replaced only with ``overwrite`` (and only if it is a volume file). ``description``:
    a note kept in the file's header, NIfTI ``descrip`` (ASCII, cut to 79 bytes) or the ``NOTE_KEY`` field."""
    path = Path(path)
    suffix = volume_suffix(path)
    with atomic_output(path, overwrite) as tmp:
        if suffix in NIFTI_SUFFIXES:
            import nibabel as nib

            image = nib.Nifti1Image(np.asarray(volume.data, dtype=np.float32), volume.affine)
            image.set_qform(volume.affine, code=1)
            image.set_sform(volume.affine, code=1)
            if description is not None:
                image.header["descrip"] = description.encode("ascii", "replace")[:NIFTI_DESCRIPTION_BYTES]
            nib.save(image, str(tmp))
        else:
            import SimpleITK as sitk

            image = sitk.GetImageFromArray(np.transpose(np.asarray(volume.data, dtype=np.float32), (2, 1, 0)))
            lps = LPS_TO_RAS @ volume.affine
            spacing = volume.spacing
            image.SetSpacing([float(s) for s in spacing])
            image.SetDirection([float(v) for v in (lps[:3, :3] / spacing).ravel()])
            image.SetOrigin([float(v) for v in lps[:3, 3]])
            if description is not None:
                image.SetMetaData(NOTE_KEY, " ".join(description.split()))  # one header line
            sitk.WriteImage(image, str(tmp), True)
    return path
