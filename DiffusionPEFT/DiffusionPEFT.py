"""DiffusionPEFT: fine-tune pretrained 3D diffusion models on scene volumes with parameter-efficient
adapters, then synthesize volumes next to a reference, reconstruct an undersampled scan with the model as
prior, or translate a source volume into another contrast, and compare them (DESIGN.md §4).

This file only assembles the module; the parameter node, the Logic and the panel live in
``DiffusionPEFTSlicer/``. The work runs in a subprocess (``PythonSlicer -m DiffusionPEFTLib run
job.json``); this module knows MRML and Qt, never torch.
"""

import pathlib
import tempfile

import slicer
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.ScriptedLoadableModule import ScriptedLoadableModule, ScriptedLoadableModuleTest

from DiffusionPEFTSlicer import sample_data
from DiffusionPEFTSlicer.logic import DiffusionPEFTLogic  # noqa: F401  (batch scripts: DiffusionPEFT.DiffusionPEFTLogic)
from DiffusionPEFTSlicer.parameter_node import DiffusionPEFTParameterNode  # noqa: F401
from DiffusionPEFTSlicer.volume_exchange import loadVolumeNode, writeVolumeNode
from DiffusionPEFTSlicer.widget import DiffusionPEFTWidget  # noqa: F401  (Slicer finds it here)


class DiffusionPEFT(ScriptedLoadableModule):
    """Module description shown in Slicer's module list and help panel."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("Diffusion PEFT")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Machine Learning")]
        self.parent.dependencies = []
        self.parent.contributors = ["DiffusionPEFT developers"]
        self.parent.helpText = _(
            "Fine-tune a pretrained 3D diffusion model on volumes of the scene with a parameter-efficient "
            "adapter (TenVOO, LoRA, DoRA, …), synthesize new volumes on a reference grid, reconstruct a "
            "retrospectively undersampled scan with the model as prior, or translate a source volume into another "
            "contrast (both with an uncertainty map), and compare them (MS-SSIM, SSIM, PSNR, NRMSE). "
            "See docs/slicer.md in the extension repository.")
        self.parent.acknowledgementText = _("Built on MONAI generative models and 3D Slicer.")
        slicer.app.connect("startupCompleted()", registerSampleData)


def registerSampleData():
    """Offer every simulated volume shipped in Resources/SampleData in the Sample Data module."""
    import SampleData

    icon = pathlib.Path(__file__).parent / "Resources" / "Icons" / "DiffusionPEFT.png"
    for volume in sample_data.sampleVolumes():
        name = sample_data.volumeName(volume)
        SampleData.SampleDataLogic.registerCustomSampleDataSource(
            category=sample_data.SAMPLE_DATA_CATEGORY, sampleName=name,
            thumbnailFileName=str(sample_data.thumbnailFor(volume, icon)),
            uris=volume.as_uri(), fileNames=volume.name, nodeNames=name)


class DiffusionPEFTTest(ScriptedLoadableModuleTest):
    """In-Slicer self test ("Reload and Test"): scene ↔ job-folder volume exchange, no torch needed."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_volumeRoundTripKeepsGeometry()

    def test_volumeRoundTripKeepsGeometry(self):
        import numpy as np

        self.delayDisplay("Writing an oblique volume and loading it back")
        ijkToRAS = np.array([[0.0, -0.9, 0.2, 10.0], [0.8, 0.0, 0.0, -5.0], [0.0, 0.1, 2.5, 3.0], [0, 0, 0, 1]])
        source = slicer.util.addVolumeFromArray(np.random.rand(6, 5, 4).astype(np.float32), ijkToRAS, "source")
        with tempfile.TemporaryDirectory() as folder:
            path = writeVolumeNode(source, pathlib.Path(folder) / "source.nii")
            loaded = loadVolumeNode(path, "loaded", source)
        np.testing.assert_array_equal(slicer.util.arrayFromVolume(loaded), slicer.util.arrayFromVolume(source))
        self.assertEqual(loaded.GetImageData().GetDimensions(), source.GetImageData().GetDimensions())
        self.delayDisplay("Test passed")
