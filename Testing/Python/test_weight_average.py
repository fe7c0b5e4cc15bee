"""The exponential moving average of trained weights (pretrain and translate-train --ema): the formula, exact
resume, and that the package holds the average."""

import torch
from conftest import TINY_ARCH, TINY_TRANSLATION_ARCH, run_cli
from torch import nn

from DiffusionPEFTLib.models import load_model
from DiffusionPEFTLib.training.ema import WeightAverage
from DiffusionPEFTLib.translation.model import load_translation_model


def test_the_average_follows_the_ema_formula_step_by_step():
    torch.manual_seed(0)
    module = nn.Linear(3, 2)
    average = WeightAverage(module, decay=0.8)
    optimizer = torch.optim.SGD(module.parameters(), lr=0.3)
    expected = None
    for step in range(6):
        optimizer.zero_grad()
        module(torch.randn(4, 3)).pow(2).sum().backward()
        optimizer.step()
        average.after_step(None, step, None)
        current = [p.detach().clone() for p in module.parameters()]
        expected = current if expected is None else [0.8 * e + 0.2 * c for e, c in zip(expected, current)]
    target = nn.Linear(3, 2)
    average.copy_to(target)
    for got, want, last in zip(target.parameters(), expected, module.parameters()):
        torch.testing.assert_close(got, want)
        assert not torch.allclose(got, last)  # the average is not the last iterate


def test_the_average_survives_a_checkpoint_round_trip():
    module = nn.Linear(3, 2)
    first = WeightAverage(module, decay=0.5)
    first.after_step(None, 0, None)
    with torch.no_grad():
        module.weight.add_(1.0)
    first.after_step(None, 1, None)
    second = WeightAverage(nn.Linear(3, 2), decay=0.5)
    second.load_state_dict(first.state_dict())
    a, b = nn.Linear(3, 2), nn.Linear(3, 2)
    first.copy_to(a)
    second.copy_to(b)
    torch.testing.assert_close(a.weight, b.weight, rtol=0, atol=0)


def _weights(path, load=load_model):
    return {k: v.clone() for k, v in load(path).unet.state_dict().items()}


def test_pretrain_writes_the_average_and_resumes_it_exactly(tmp_path, volume_folder):
    common = [volume_folder, *TINY_ARCH, "--seed", "2", "--checkpoint-every", "3", "--lr", "1e-3"]
    assert run_cli("pretrain", *common, "--steps", "6", "--out", tmp_path / "raw")[0] == 0
    assert run_cli("pretrain", *common, "--steps", "6", "--ema", "0.9", "--out", tmp_path / "ema")[0] == 0
    assert run_cli("pretrain", *common, "--steps", "3", "--ema", "0.9", "--out", tmp_path / "part",
                   "--workdir", tmp_path / "work")[0] == 0
    code, events = run_cli("pretrain", *common, "--steps", "6", "--ema", "0.9", "--out", tmp_path / "part", "--resume",
                           "--overwrite", "--workdir", tmp_path / "work")
    assert code == 0, events.events
    raw, ema, resumed = _weights(tmp_path / "raw"), _weights(tmp_path / "ema"), _weights(tmp_path / "part")
    trained = [name for name in raw if name.endswith("weight") and not torch.equal(raw[name], ema[name])]
    assert len(trained) > 10  # the package holds the average, not the last weights
    for name in ema:
        torch.testing.assert_close(resumed[name], ema[name], rtol=0, atol=0, msg=name)
    assert load_model(tmp_path / "ema").config.provenance["training"]["ema_decay"] == 0.9
    # another decay cannot resume this run's checkpoint
    code, events = run_cli("pretrain", *common, "--steps", "8", "--ema", "0.99", "--out", tmp_path / "part", "--resume",
                           "--overwrite", "--workdir", tmp_path / "work")
    assert code != 0 and "ema" in events.of("error")[0]["message"]


def test_translate_train_writes_the_average_of_its_steps(tmp_path, translation_cohort):
    """decay 0.5 over two steps: the package holds ½ w₁ + ½ w₂, with w₁ and w₂ the weights a 1- and a 2-step run
    without --ema end with (training is deterministic by seed)."""
    common = [translation_cohort / "manifest.json", "--source", "t1", "--target", "flair", *TINY_TRANSLATION_ARCH,
              "--seed", "3", "--lr", "1e-2"]
    for name, extra in {"one": ["--steps", "1"], "two": ["--steps", "2"], "ema": ["--steps", "2", "--ema", "0.5"]}.items():
        code, events = run_cli("translate-train", *common, *extra, "--out", tmp_path / name)
        assert code == 0, events.events
    one, two, ema = (_weights(tmp_path / name, load_translation_model) for name in ("one", "two", "ema"))
    moved = [name for name in two if not torch.equal(one[name], two[name])]
    assert len(moved) > 10
    for name in ema:
        torch.testing.assert_close(ema[name], 0.5 * one[name] + 0.5 * two[name], msg=name)
    assert load_translation_model(tmp_path / "ema").config.provenance["training"]["ema_decay"] == 0.5
