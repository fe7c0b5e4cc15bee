"""DiffusionPEFTLib: the Slicer-free backend of DiffusionPEFT (torch, MONAI, nibabel, SimpleITK).

Fine-tune pretrained 3D diffusion models with parameter-efficient adapters and use them to
synthesize, translate and reconstruct MRI volumes. Never imports slicer, qt, ctk or vtk.
"""

__version__ = "0.1.0"
