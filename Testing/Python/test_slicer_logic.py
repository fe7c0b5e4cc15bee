"""DiffusionPEFTLogic on a real MRML scene (slicer-core) with the real backend in a subprocess, and with the
stand-in backend (``slow_backend.py``) for reconstruct, polled as the panel polls it.

Volumes are oblique and anisotropic; outputs must land in NEW nodes on the reference's (or source's)
exact grid, inputs must stay untouched, and a cancelled job must leave neither nodes nor final files behind.
"""

from __future__ import annotations

import json
import pathlib
import sys
import time

import nibabel as nib
import numpy as np
import pytest
import slicer_standins

slicer_standins.install()

import gui_thread  # noqa: E402
import slicer  # noqa: E402
import slow_backend  # noqa: E402
from conftest import run_cli, smooth_volume  # noqa: E402
from DiffusionPEFTLib.adapters import get_method  # noqa: E402
from DiffusionPEFTLib.commands import COMMAND_MODULES  # noqa: E402
from DiffusionPEFTLib.commands.info import model_card  # noqa: E402
from DiffusionPEFTLib.volumes import Volume, write_volume  # noqa: E402
from DiffusionPEFT import DiffusionPEFTLogic, registerSampleData  # noqa: E402
from DiffusionPEFTSlicer import comparison, formatting, model_tasks, sample_data  # noqa: E402
from DiffusionPEFTSlicer.job_result import JobFailed  # noqa: E402
from DiffusionPEFTSlicer.launcher import BackendLauncher, backendEnvironment  # noqa: E402
from DiffusionPEFTSlicer.volume_exchange import ijkToRas, loadVolumeNode, writeVolumeNode  # noqa: E402

def obliqueIjkToRas(spacing=(1.15, 0.9, 2.0), angles=(0.4, -0.3), origin=(12.5, -31.0, 8.25)) -> np.ndarray:
    """Rotated about S then R (no voxel axis along R, A or S), anisotropic spacing in mm."""
    (cz, sz), (cx, sx) = [(np.cos(a), np.sin(a)) for a in angles]
    rotation = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]]) @ np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    matrix = np.eye(4)
    matrix[:3, :3] = rotation * np.asarray(spacing)
    matrix[:3, 3] = origin
    return matrix


OBLIQUE_IJK_TO_RAS = obliqueIjkToRas()
SLOW_BACKEND = pathlib.Path(slow_backend.__file__)
RESPONSIVE_S = 0.5
TINY_TRANSLATION = ["--shape", "16", "20", "16", "--spacing", "12", "--channels", "8", "16", "16", "--norm-groups", "8",
                    "--head-channels", "8", "--timesteps", "100", "--steps", "2", "--source-name", "t1",
                    "--target-name", "flair"]


def blobVolume(shape_kji=(14, 22, 18), seed=0) -> np.ndarray:
    """A smooth, non-constant volume indexed [k, j, i] like arrayFromVolume."""
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, n) for n in shape_kji], indexing="ij"))
    centre = np.random.default_rng(seed).uniform(-0.3, 0.3, size=(3, 1, 1, 1))
    return (100 * np.exp(-4 * ((grid - centre) ** 2).sum(axis=0))).astype(np.float32)


@pytest.fixture(scope="module")
def tiny_translation_model(tmp_path_factory):
    """A t1 → flair translation model trained for 2 steps on two (source, inverted source) pairs."""
    folder = tmp_path_factory.mktemp("translation")
    rows = ["source,target"]
    for index in range(2):
        source = smooth_volume(seed=10 + index)
        target = Volume(100 - source.data, source.affine)
        rows.append(f"{write_volume(source, folder / f't1_{index}.nii.gz')},{write_volume(target, folder / f'flair_{index}.nii.gz')}")
    (folder / "pairs.csv").write_text("\n".join(rows) + "\n")
    code, events = run_cli("translate-train", folder / "pairs.csv", *TINY_TRANSLATION, "--out", folder / "t1-to-flair")
    assert code == 0, events.events
    return folder / "t1-to-flair"


@pytest.fixture
def scene():
    return slicer_standins.freshScene()


@pytest.fixture
def study(scene):
    """Two oblique volumes under one study of the subject hierarchy (as Slicer's DICOM/Data modules do)."""
    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    studyItem = hierarchy.CreateStudyItem(hierarchy.CreateSubjectItem(hierarchy.GetSceneItemID(), "subject"), "study")
    volumes = []
    for index in range(2):
        node = slicer.util.addVolumeFromArray(blobVolume(seed=index), OBLIQUE_IJK_TO_RAS, f"t1_{index}")
        hierarchy.CreateItem(studyItem, node)
        volumes.append(node)
    return hierarchy, studyItem, volumes


@pytest.fixture
def logic(tmp_path):
    return DiffusionPEFTLogic(BackendLauncher([sys.executable], backendEnvironment()), jobsFolder=tmp_path / "jobs")


@pytest.fixture
def standinLogic(tmp_path, monkeypatch):
    """The logic with the stand-in backend, where a blocking process call on this (the GUI) thread fails the test."""
    gui_thread.refuseBlockingProcessCalls(monkeypatch)
    environment = {**backendEnvironment(), "SLOW_BACKEND_DELAY": "0.1"}
    return DiffusionPEFTLogic(BackendLauncher([sys.executable, str(SLOW_BACKEND)], environment),
                              jobsFolder=tmp_path / "standin-jobs")


@pytest.fixture
def standinPrior(tmp_path):
    """A class-conditioned synthesis model as the stand-in backend reads it (model.json only)."""
    folder = tmp_path / "prior"
    folder.mkdir()
    (folder / "model.json").write_text(json.dumps({"answerDelay": 0, "condition_classes": ["t1", "t2", "pd"]}))
    return folder


def startInBackground(start):
    """Start a job as the panel does (``waitForCompletion=False``): the call must return at once, the job running."""
    started = time.monotonic()
    job = start()
    assert time.monotonic() - started < RESPONSIVE_S and job.running
    return job


def pollUntilDone(job, timeout: float = 60.0) -> None:
    """Poll like the panel's timer until the job has ended."""
    deadline = time.monotonic() + timeout
    while job.poll():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def snapshot(nodes):
    """Voxels and geometry of nodes, to prove later that a job did not change them."""
    return [(slicer.util.arrayFromVolume(n).copy(), ijkToRas(n), n.GetName()) for n in nodes]


def assertUnchanged(nodes, before):
    for node, (voxels, matrix, name) in zip(nodes, before):
        np.testing.assert_array_equal(slicer.util.arrayFromVolume(node), voxels)
        np.testing.assert_array_equal(ijkToRas(node), matrix)
        assert node.GetName() == name


def volumeNodes(scene):
    return [scene.GetNthNodeByClass(i, "vtkMRMLScalarVolumeNode")
            for i in range(scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode"))]


def assertOnGridBeside(nodes, inputNode, study):
    """Each node is a new, non-constant volume on ``inputNode``'s exact grid, under the study of ``study``."""
    hierarchy, studyItem, inputs = study
    for node in nodes:
        assert node not in inputs and np.ptp(slicer.util.arrayFromVolume(node)) > 0
        assert node.GetImageData().GetDimensions() == inputNode.GetImageData().GetDimensions()
        np.testing.assert_array_equal(ijkToRas(node), ijkToRas(inputNode))
        assert hierarchy.GetItemParent(hierarchy.GetItemByDataNode(node)) == studyItem


def recordProgress(logic) -> list[dict]:
    """The progress events of the logic's next jobs, as they come."""
    events = []
    logic.progressCallback = events.append
    return events


def test_written_input_is_the_backend_contract_and_loads_back_exactly(scene, study, tmp_path):
    hierarchy, studyItem, (source, _) = study
    before = snapshot([source])
    path = writeVolumeNode(source, tmp_path / "source.nii")
    image = nib.load(path)
    np.testing.assert_allclose(image.affine, OBLIQUE_IJK_TO_RAS, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(image.dataobj), slicer.util.arrayFromVolume(source).transpose(2, 1, 0))
    loaded = loadVolumeNode(path, "t1_0", source)
    assert loaded is not source and loaded.GetName() == "t1_0_1"
    np.testing.assert_array_equal(ijkToRas(loaded), OBLIQUE_IJK_TO_RAS)  # exact, not float32-rounded
    assert hierarchy.GetItemParent(hierarchy.GetItemByDataNode(loaded)) == studyItem
    assertUnchanged([source], before)


def test_parameter_node_is_a_singleton_with_typed_defaults(scene, logic, study):
    parameters = logic.getParameterNode()
    parameters.referenceVolume = study[2][0]
    parameters.adapterRank = 16
    again = logic.getParameterNode()
    assert again.referenceVolume is study[2][0] and again.adapterRank == 16
    assert again.adapterMethod == "tenvoo-l" and again.learningRate == 0.0  # 0 = the method's own
    assert (again.generateTask, again.acceleration, again.undersamplingMask, again.coils, again.reconstructionMethod,
            again.reconstructionSamples, again.contrast) == ("synthesize", 4.0, "equispaced", 1, "ddnm", 4, "")
    with pytest.raises(ValueError):
        again.adapterMethod = "no-such-method"
    with pytest.raises(ValueError):
        again.acceleration = 1.0  # below 1.5: nothing left out


def test_synthesize_like_reference_adds_new_nodes_on_the_reference_grid(scene, study, logic, tiny_model_dir):
    inputs = study[2]
    reference = inputs[0]
    before, nodesBefore = snapshot(inputs), volumeNodes(scene)
    progress = recordProgress(logic)
    job = logic.synthesize(tiny_model_dir, reference, count=2, steps=3, seed=3)
    outputs = job.result.nodes
    assert len(outputs) == 2 and len(volumeNodes(scene)) == len(nodesBefore) + 2
    assert all(node.GetName().startswith("t1_0 synthesized") for node in outputs)
    assertOnGridBeside(outputs, reference, study)
    assertUnchanged(inputs, before)
    assert progress and progress[-1]["step"] == progress[-1]["total"]
    assert (job.folder / "job.json").is_file() and (job.folder / "inputs" / "reference.nii").is_file()


def test_finetune_then_synthesize_with_the_adapter(scene, study, logic, tiny_model_dir):
    if "finetune" not in COMMAND_MODULES:
        pytest.skip("the backend has no 'finetune' command yet")
    inputs = study[2]
    before = snapshot(inputs)
    losses = []
    logic.progressCallback = lambda event: losses.append(event.get("loss"))
    job = logic.fineTune(inputs, tiny_model_dir, method="lora", rank=2, targets="all-conv", steps=3,
                         learningRate=1e-3, batchSize=1, seed=1)
    adapter = job.result.adapterPath
    assert (adapter / "adapter.json").is_file() and any(loss is not None for loss in losses)
    assertUnchanged(inputs, before)
    generated = logic.synthesize(tiny_model_dir, inputs[1], adapterPath=adapter, steps=2).result.nodes
    np.testing.assert_array_equal(ijkToRas(generated[0]), OBLIQUE_IJK_TO_RAS)
    assertUnchanged(inputs, before)


def test_a_selection_method_finetunes_without_rank_and_targets(scene, study, logic, tiny_model_dir):
    job = logic.fineTune(study[2][:1], tiny_model_dir, method="norm-bias", rank=8, targets="attention", steps=1)
    manifest = json.loads((job.result.adapterPath / "adapter.json").read_text())
    assert manifest["method"] == "norm-bias"
    assert manifest["provenance"]["lr"] == pytest.approx(get_method("norm-bias").lr)  # learningRate 0: its default


def test_translate_adds_the_translation_and_its_std_beside_the_source_on_its_grid(scene, study, logic,
                                                                                 tiny_translation_model):
    inputs = study[2]
    source = inputs[0]
    before, nodesBefore = snapshot(inputs), volumeNodes(scene)
    progress = recordProgress(logic)
    job = logic.translate(tiny_translation_model, source, samples=3, steps=2, seed=4)
    translated, uncertainty = job.result.nodes
    assert len(volumeNodes(scene)) == len(nodesBefore) + 2
    assert (translated.GetName(), uncertainty.GetName()) == ("t1_0 translated", "t1_0 translated std")
    assertOnGridBeside([translated, uncertainty], source, study)
    assert slicer.util.arrayFromVolume(uncertainty).min() >= 0  # a std; not constant: the 3 draws differ
    assert uncertainty.GetDisplayNode().GetColorNodeID() == comparison.UNCERTAINTY_COLORS
    assertUnchanged(inputs, before)
    assert {event["stage"] for event in progress} == {"translate"} and progress[-1]["step"] == progress[-1]["total"]
    spec = json.loads((job.folder / "job.json").read_text())
    assert spec["command"] == "translate" and spec["options"] == {"device": "auto", "seed": 4}
    assert spec["args"] == {"model": str(tiny_translation_model), "samples": 3, "steps": 2,
                            "out": "outputs/translated.nii", "source": "inputs/source.nii"}
    single = logic.translate(tiny_translation_model, source, samples=1, steps=1)
    assert [node.GetName() for node in single.result.nodes] == ["t1_0 translated_1"]
    assert sorted(p.name for p in (single.folder / "outputs").iterdir()) == ["translated.nii"]


def test_reconstruct_adds_the_reconstruction_zero_filled_image_and_std_beside_the_source_on_its_grid(
        scene, study, standinLogic, standinPrior):
    inputs = study[2]
    source = inputs[0]
    before, nodesBefore = snapshot(inputs), volumeNodes(scene)
    progress, finished = recordProgress(standinLogic), []
    standinLogic.completionCallback = finished.append
    job = startInBackground(lambda: standinLogic.reconstruct(
        standinPrior, source, acceleration=6.5, mask="vd", coils=8, method="dps", samples=2, contrast="t2", seed=5,
        waitForCompletion=False))
    assert job.result.nodes == [] and len(volumeNodes(scene)) == len(nodesBefore)  # nothing before it ends
    pollUntilDone(job)
    assert job.result.succeeded and finished == [job.result]
    reconstruction, zeroFilled, uncertainty, table = job.result.nodes
    assert len(volumeNodes(scene)) == len(nodesBefore) + 3
    assert [n.GetName() for n in (reconstruction, zeroFilled, uncertainty)] == [
        "t1_0 recon R6.5 dps", "t1_0 zero-filled R6.5", "t1_0 recon R6.5 dps std"]
    assertOnGridBeside([reconstruction, zeroFilled, uncertainty], source, study)
    display = uncertainty.GetDisplayNode()
    assert display.GetColorNodeID() == comparison.UNCERTAINTY_COLORS
    assert display.GetWindow() == pytest.approx(slicer.util.arrayFromVolume(uncertainty).max())
    assert reconstruction.GetDisplayNode().GetColorNodeID() != comparison.UNCERTAINTY_COLORS
    assertUnchanged(inputs, before)
    assert {e["stage"] for e in progress} == {"reconstruct"} and progress[-1]["step"] == progress[-1]["total"]
    spec = json.loads((job.folder / "job.json").read_text())
    assert spec["command"] == "reconstruct" and spec["options"] == {"device": "auto", "seed": 5}
    assert spec["args"] == {"model": str(standinPrior), "source": "inputs/source.nii",
                            "out": "outputs/reconstruction.nii", "acceleration": 6.5, "mask": "vd", "coils": 8,
                            "method": "dps", "samples": 2, "contrast": "t2"}
    assert job.result.metrics == slow_backend.RECONSTRUCTION_METRICS
    rows = {table.GetCellText(row, 0): (float(table.GetCellText(row, 1)), float(table.GetCellText(row, 2)))
            for row in range(table.GetNumberOfRows())}
    assert [table.GetColumnName(column) for column in range(3)] == ["Metric", "Reconstruction", "Zero-filled"]
    expected = {"SSIM": (0.91, 0.58), "PSNR (dB)": (31.5, 22.25), "NRMSE": (0.12, 0.34)}  # the events' values
    assert list(rows) == list(expected) and all(rows[label] == pytest.approx(expected[label]) for label in expected)
    single = startInBackground(lambda: standinLogic.reconstruct(standinPrior, source, samples=1,
                                                                waitForCompletion=False))
    pollUntilDone(single)
    assert [node.GetName() for node in single.result.nodes[:-1]] == ["t1_0 recon R4 ddnm", "t1_0 zero-filled R4"]
    args = json.loads((single.folder / "job.json").read_text())["args"]
    assert "contrast" not in args and (args["acceleration"], args["mask"], args["coils"], args["method"]) == (
        4.0, "equispaced", 1, "ddnm")
    assertUnchanged(inputs, before)


def test_cancelling_a_reconstruction_adds_nothing_and_leaves_the_source_unchanged(scene, study, standinLogic,
                                                                                   standinPrior):
    source = study[2][0]
    before, nodesBefore = snapshot(study[2]), volumeNodes(scene)
    progress, finished = recordProgress(standinLogic), []
    standinLogic.completionCallback = finished.append
    job = startInBackground(lambda: standinLogic.reconstruct(standinPrior, source, samples=16, waitForCompletion=False))
    while job.poll() and not progress:
        time.sleep(0.02)
    assert job.running
    standinLogic.cancel(graceSeconds=30.0)
    pollUntilDone(job)
    assert job.result.cancelled and finished == [job.result] and not job.result.succeeded
    assert job.result.error["message"] == "Reconstruction was cancelled."  # it stopped itself: not killed
    assert progress[-1]["step"] < progress[-1]["total"]
    assert job.result.nodes == [] and volumeNodes(scene) == nodesBefore
    assertUnchanged(study[2], before)
    assert not (job.folder / "outputs").exists() and not standinLogic.running


def test_the_jobs_of_reconstruct_and_synthesize_are_the_backends_command_lines(scene, study, standinLogic,
                                                                               standinPrior, tmp_path):
    """job.json read by the real backend's parser: the options the panel sets reach the command as they should."""
    pytest.importorskip("DiffusionPEFTLib.commands.reconstruct")
    from DiffusionPEFTLib.cli import build_parser
    from DiffusionPEFTLib.jobs import job_to_argv, load_job

    parser = build_parser()
    source = study[2][0]
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    reconstructing = standinLogic.reconstruct(standinPrior, source, adapter, 2.5, "random", 4, "cs", 3, "pd", 7,
                                              "cpu", waitForCompletion=False)
    pollUntilDone(reconstructing)
    args = parser.parse_args(job_to_argv(load_job(reconstructing.folder / "job.json"), parser))
    assert (args.command, args.model, args.source, args.out) == (
        "reconstruct", str(standinPrior), "inputs/source.nii", "outputs/reconstruction.nii")
    assert (args.acceleration, args.mask, args.coils, args.method, args.samples, args.contrast, args.adapter) == (
        2.5, "random", 4, "cs", 3, "pd", str(adapter))
    assert (args.device, args.seed) == ("cpu", 7)
    synthesizing = standinLogic.synthesize(standinPrior, source, contrast="t1", waitForCompletion=False)
    pollUntilDone(synthesizing)
    args = parser.parse_args(job_to_argv(load_job(synthesizing.folder / "job.json"), parser))
    assert (args.command, args.contrast, args.like, args.condition) == ("synthesize", "t1", "inputs/reference.nii", None)
    conditioned = standinLogic.synthesize(standinPrior, source, conditions={"age": 0.6, "ventricular_vol": 0.3},
                                          waitForCompletion=False)
    pollUntilDone(conditioned)
    args = parser.parse_args(job_to_argv(load_job(conditioned.folder / "job.json"), parser))
    assert args.condition == {"age": 0.6, "ventricular_vol": 0.3}
    for precision, checkpointing in (("bf16", True), ("auto", False)):
        fineTuning = standinLogic.fineTune([source], standinPrior, steps=1, batchSize=2, precision=precision,
                                           checkpointing=checkpointing, waitForCompletion=False)
        pollUntilDone(fineTuning)
        args = parser.parse_args(job_to_argv(load_job(fineTuning.folder / "job.json"), parser))
        assert (args.precision, args.checkpointing, args.batch) == (precision, checkpointing, 2)


def test_the_card_of_each_kind_of_model_sets_the_panels_tasks(tiny_model_dir, tiny_translation_model):
    """The keys the panel reads from the real backend's card (``info --json``)."""
    translator, synthesizer = model_card(tiny_translation_model), model_card(tiny_model_dir)
    assert model_tasks.generateTasks(translator) == ["translate"] and not model_tasks.fineTunable(translator)
    assert "translates t1 → flair" in formatting.modelCardText(translator, None)
    assert model_tasks.generateTasks(synthesizer) == ["synthesize", "reconstruct"]  # also a reconstruction prior
    assert model_tasks.fineTunable(synthesizer) and "translates" not in formatting.modelCardText(synthesizer, None)
    assert model_tasks.conditionClasses(synthesizer) == []
    assert "classes" not in formatting.modelCardText(synthesizer, None)
    classed = {**synthesizer, "condition_classes": ["t1", "t2", "pd"]}
    assert model_tasks.conditionClasses(classed) == ["t1", "t2", "pd"]
    assert "<br>classes: t1, t2, pd" in formatting.modelCardText(classed, None)


def test_a_model_of_the_other_task_fails_with_the_backends_message(scene, study, logic, tiny_model_dir,
                                                                  tiny_translation_model):
    nodesBefore = volumeNodes(scene)
    with pytest.raises(JobFailed) as synthesizing:
        logic.synthesize(tiny_translation_model, study[2][0], steps=1)
    assert synthesizing.value.kind == "model" and "diffusion-peft translate" in synthesizing.value.hint
    assert synthesizing.value.message == "t1-to-flair is a translation model, not a synthesis model."
    with pytest.raises(JobFailed) as translating:
        logic.translate(tiny_model_dir, study[2][0], steps=1)
    assert translating.value.kind == "model" and "not a translation model" in translating.value.message
    assert volumeNodes(scene) == nodesBefore


def test_compare_adds_a_difference_volume_and_a_metrics_table(scene, study, logic):
    reference, other = study[2]
    before = snapshot([reference, other])
    difference, table = logic.compare(reference, other).result.nodes
    np.testing.assert_allclose(slicer.util.arrayFromVolume(difference),
                               slicer.util.arrayFromVolume(other) - slicer.util.arrayFromVolume(reference))
    metrics = {table.GetCellText(row, 0): float(table.GetCellText(row, 1)) for row in range(table.GetNumberOfRows())}
    assert set(metrics) >= {"MS-SSIM", "SSIM", "PSNR (dB)", "NRMSE"}
    assert 0 < metrics["SSIM"] < 1
    assertUnchanged([reference, other], before)


@pytest.mark.parametrize("graceSeconds", [30.0, 0.0], ids=["stop-file", "kill"])
def test_cancel_mid_job_leaves_scene_and_files_consistent(scene, study, logic, tiny_model_dir, graceSeconds):
    reference = study[2][0]
    before, nodesBefore = snapshot(study[2]), volumeNodes(scene)
    events, finished = recordProgress(logic), []
    logic.completionCallback = finished.append
    job = logic.synthesize(tiny_model_dir, reference, steps=1000, sampler="ddpm", waitForCompletion=False)
    while job.poll() and not any(e["step"] > 0 for e in events):
        time.sleep(0.02)
    logic.cancel(graceSeconds)
    with pytest.raises(JobFailed) as failure:
        job.wait()
    assert failure.value.kind == "cancelled" and job.result.cancelled and finished == [job.result]
    assert volumeNodes(scene) == nodesBefore
    assertUnchanged(study[2], before)
    assert not (job.folder / "outputs" / "synthesized.nii").exists()
    if graceSeconds:  # the job stopped itself: no temporary file either
        assert not any(job.folder.rglob("*partial*"))


def test_backend_error_is_raised_with_message_and_hint(scene, study, logic, tmp_path):
    nodesBefore = volumeNodes(scene)
    (tmp_path / "not-a-model").mkdir()
    with pytest.raises(JobFailed) as failure:
        logic.synthesize(tmp_path / "not-a-model", study[2][0], steps=1)
    assert failure.value.kind == "model" and failure.value.hint
    assert volumeNodes(scene) == nodesBefore


def test_bad_selections_fail_before_any_job_starts(scene, logic, tiny_model_dir):
    with pytest.raises(ValueError, match="training volume"):
        logic.fineTune([], tiny_model_dir)
    with pytest.raises(ValueError, match="model"):
        logic.synthesize("")
    with pytest.raises(ValueError, match="reference and an output"):
        logic.compare(None, None)
    with pytest.raises(ValueError, match="source volume"):
        logic.translate(tiny_model_dir, None)
    with pytest.raises(ValueError, match="source volume"):
        logic.reconstruct(tiny_model_dir, None)
    assert not logic.jobsFolder.exists() or not any(logic.jobsFolder.iterdir())


def test_a_job_that_cannot_be_prepared_leaves_no_folder_behind(scene, study, logic, tmp_path):
    """Its inputs were already written (NIfTI copies of scans): they must not stay where cleanup cannot see them."""
    empty = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "empty")
    with pytest.raises(ValueError, match="no image data"):
        logic.fineTune([study[2][0], empty], tmp_path / "model")
    assert list(logic.jobsFolder.iterdir()) == []


def test_sample_data_registers_the_shipped_volumes_on_the_demo_models_grid():
    slicer_standins.SampleDataLogic.registered.clear()
    registerSampleData()
    registered = slicer_standins.SampleDataLogic.registered
    volumes = sample_data.sampleVolumes()
    assert len(volumes) >= 2 and {v.parent for v in volumes} == {slicer_standins.MODULE_FOLDER / "Resources" / "SampleData"}
    assert [source["fileNames"] for source in registered] == [path.name for path in volumes]
    for source, volume in zip(registered, volumes):
        assert source["category"] == "DiffusionPEFT" and source["uris"] == volume.as_uri()
        assert volume.stat().st_size < 100_000
        node = loadVolumeNode(volume, source["nodeNames"])
        assert node.GetImageData().GetDimensions() == (32, 40, 32) and node.GetSpacing() == pytest.approx((6, 6, 6))
        assert np.ptp(slicer.util.arrayFromVolume(node)) > 0
