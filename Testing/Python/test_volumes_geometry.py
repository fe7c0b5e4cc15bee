"""Geometry contract: round trips through nibabel, SimpleITK (LPS) and Slicer's [k,j,i] + IJKToRAS."""

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from conftest import oblique_affine, smooth_volume

from DiffusionPEFTLib.volumes import (
    IntensityNormalisation, Volume, field_of_view_overlap, from_model_grid, from_slicer_array, read_volume, resample,
    to_model_grid, to_slicer_array, write_volume,
)
from DiffusionPEFTLib.volumes.io import NOTE_KEY


@pytest.fixture
def oblique():
    return smooth_volume(shape=(13, 17, 9), affine=oblique_affine(), seed=3)


def test_nifti_round_trip_keeps_oblique_anisotropic_geometry(tmp_path, oblique):
    path = write_volume(oblique, tmp_path / "a.nii.gz")
    image = nib.load(str(path))
    np.testing.assert_allclose(image.affine, oblique.affine, atol=1e-5)
    back = read_volume(path)
    np.testing.assert_array_equal(back.data, oblique.data)
    np.testing.assert_allclose(back.affine, oblique.affine, atol=1e-5)
    np.testing.assert_allclose(back.spacing, [1.2, 0.9, 2.5], atol=1e-5)


@pytest.mark.parametrize("suffix", [".nrrd", ".mha", ".mhd"])
def test_itk_formats_agree_with_simpleitk_physical_points(tmp_path, oblique, suffix):
    path = write_volume(oblique, tmp_path / f"a{suffix}")
    image = sitk.ReadImage(str(path))
    for index in [(0, 0, 0), (12, 0, 3), (4, 16, 8)]:
        lps = np.asarray(image.TransformIndexToPhysicalPoint(index))
        ras = oblique.affine @ np.array([*index, 1.0])
        np.testing.assert_allclose(lps * [-1, -1, 1], ras[:3], atol=1e-4)
        assert image.GetPixel(index) == pytest.approx(oblique.data[index], rel=1e-6)
    back = read_volume(path)
    np.testing.assert_allclose(back.affine, oblique.affine, atol=1e-5)
    np.testing.assert_array_equal(back.data, oblique.data)


def test_nifti_and_nrrd_of_the_same_volume_read_identically(tmp_path, oblique):
    a = read_volume(write_volume(oblique, tmp_path / "a.nii.gz"))
    b = read_volume(write_volume(a, tmp_path / "b.nrrd"))
    np.testing.assert_allclose(a.affine, b.affine, atol=1e-5)
    np.testing.assert_array_equal(a.data, b.data)


def test_slicer_array_convention_on_a_real_mrml_volume_node(tmp_path, oblique):
    slicer = pytest.importorskip("slicer")
    import vtk

    array_kji, ijk_to_ras = to_slicer_array(oblique)
    assert array_kji.shape == oblique.shape[::-1]
    scene = slicer.vtkMRMLScene()
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode")
    matrix = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            matrix.SetElement(r, c, ijk_to_ras[r, c])
    node.SetIJKToRASMatrix(matrix)
    slicer.util.updateVolumeFromArray(node, array_kji)
    read_back = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(read_back)
    back = from_slicer_array(slicer.util.arrayFromVolume(node),
                             np.array([[read_back.GetElement(r, c) for c in range(4)] for r in range(4)]))
    np.testing.assert_allclose(back.affine, oblique.affine, atol=1e-6)
    np.testing.assert_array_equal(back.data, oblique.data)
    assert node.GetImageData().GetDimensions() == oblique.shape
    # Slicer's own NIfTI writer agrees with nibabel's reading of the same node
    storage = scene.AddNewNodeByClass("vtkMRMLVolumeArchetypeStorageNode")
    storage.SetFileName(str(tmp_path / "slicer.nii.gz"))
    assert storage.WriteData(node)
    written = read_volume(tmp_path / "slicer.nii.gz")
    np.testing.assert_allclose(written.affine, oblique.affine, atol=1e-4)
    np.testing.assert_allclose(written.data, oblique.data, rtol=1e-6)


def test_model_grid_round_trip_restores_the_exact_source_grid(oblique):
    model_volume, mapping = to_model_grid(oblique, (16, 16, 16), 2.0)
    np.testing.assert_allclose(np.diag(model_volume.affine)[:3], [2.0, 2.0, 2.0])
    np.testing.assert_allclose(model_volume.center_ras(), oblique.center_ras(), atol=1e-9)
    back = from_model_grid(model_volume, mapping)
    assert back.shape == oblique.shape
    np.testing.assert_array_equal(back.affine, oblique.affine)


def test_identity_resample_keeps_values_and_upsampled_round_trip_is_close():
    volume = smooth_volume(shape=(20, 20, 20), affine=np.diag([2.0, 2.0, 2.0, 1.0]), seed=1)
    same = resample(volume, volume.shape, volume.affine)
    np.testing.assert_allclose(same.data, volume.data, atol=1e-4)
    fine, mapping = to_model_grid(volume, (40, 40, 40), 1.0)
    back = from_model_grid(fine, mapping)
    inner = (slice(2, -2),) * 3
    assert np.abs(back.data[inner] - volume.data[inner]).max() < 0.03 * volume.data.max()  # anti-aliasing on the way down blurs slightly


def test_resample_reaches_the_right_voxels_through_a_rotation():
    volume = smooth_volume(shape=(15, 15, 15), affine=oblique_affine(spacing=(1, 1, 1)), seed=2)
    point_ijk = np.array([7, 5, 9])
    target = np.eye(4)
    target[:3, 3] = (volume.affine @ np.array([*point_ijk, 1.0]))[:3]  # a 1-voxel grid at that point
    value = resample(volume, (1, 1, 1), target, antialias=False).data[0, 0, 0]
    assert value == pytest.approx(volume.data[tuple(point_ijk)], rel=1e-5)


def test_intensity_normalisation_is_recorded_and_invertible():
    data = smooth_volume(seed=4).data * 7 + 300
    params = IntensityNormalisation(0.5, 99.5, (-1.0, 1.0)).fit(data)
    scaled = params.apply(data)
    assert np.percentile(scaled, 0.5) == pytest.approx(-1.0, abs=1e-5)
    assert np.percentile(scaled, 99.5) == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(params.invert(scaled), data, rtol=1e-5)
    assert Volume(data, np.eye(4)).with_data(scaled).shape == data.shape


def test_nrrd_with_a_singleton_fourth_axis_keeps_its_geometry(tmp_path, oblique):
    """A 3D scan saved as X×Y×Z×1 (some exporters do) must land where the 3D scan lands, not at the origin."""
    three_d = sitk.ReadImage(str(write_volume(oblique, tmp_path / "a.nrrd")))
    four_d = sitk.JoinSeries([three_d])  # adds a singleton 4th axis with spacing 1 and identity in the block
    assert four_d.GetDimension() == 4 and four_d.GetSize()[3] == 1
    sitk.WriteImage(four_d, str(tmp_path / "a4.nrrd"))
    back = read_volume(tmp_path / "a4.nrrd")
    np.testing.assert_array_equal(back.data, oblique.data)
    np.testing.assert_allclose(back.affine, oblique.affine, atol=1e-5)


def test_complex_volumes_are_refused_not_silently_made_real(tmp_path):
    from DiffusionPEFTLib.errors import InputError

    data = (np.random.rand(6, 5, 4) + 1j * np.random.rand(6, 5, 4)).astype(np.complex64)
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(tmp_path / "c.nii.gz"))
    sitk.WriteImage(sitk.GetImageFromArray(data), str(tmp_path / "c.nrrd"))
    for name in ("c.nii.gz", "c.nrrd"):
        with pytest.raises(InputError, match="complex"):
            read_volume(tmp_path / name)


def test_field_of_view_overlap_is_the_covered_fraction_of_the_first_box(oblique):
    assert field_of_view_overlap(oblique, oblique) == pytest.approx(1.0)
    box = Volume(np.ones((10, 10, 10), np.float32), np.diag([2.0, 2.0, 2.0, 1.0]))  # 20 mm cube
    shifted = np.diag([2.0, 2.0, 2.0, 1.0])
    shifted[0, 3] = 5.0  # a quarter of the cube along R
    assert field_of_view_overlap(box, Volume(box.data, shifted)) == pytest.approx(0.75)
    big = Volume(np.ones((10, 10, 10), np.float32), np.diag([4.0, 4.0, 4.0, 1.0]))  # 40 mm, covers the cube
    assert field_of_view_overlap(box, big) == pytest.approx(1.0)
    assert field_of_view_overlap(big, box) == pytest.approx(1 / 8)
    shifted[0, 3] = 100.0
    assert field_of_view_overlap(box, Volume(box.data, shifted)) == 0.0


def test_a_description_goes_into_the_nifti_descrip_and_the_nrrd_header(tmp_path, oblique):
    long = "DiffusionPEFT t1->flair WARNING: é " + "x" * 100
    write_volume(oblique, tmp_path / "a.nii.gz", description=long)
    descrip = nib.load(str(tmp_path / "a.nii.gz")).header["descrip"].item()
    assert descrip == long.encode("ascii", "replace")[:79] and descrip.startswith(b"DiffusionPEFT t1->flair WARNING: ?")
    write_volume(oblique, tmp_path / "a.nrrd", description="DiffusionPEFT translation t1->flair")
    assert sitk.ReadImage(str(tmp_path / "a.nrrd")).GetMetaData(NOTE_KEY) == "DiffusionPEFT translation t1->flair"
    write_volume(oblique, tmp_path / "b.nii.gz")
    assert nib.load(str(tmp_path / "b.nii.gz")).header["descrip"].item() == b""
    np.testing.assert_allclose(read_volume(tmp_path / "a.nrrd").affine, oblique.affine, atol=1e-5)
