"""One kind of method: the registry (misgan_core/methods/) is the only place that knows which method is which.

- The engine's, the app's and the pages' source, read with `ast`: no comparison, `match` or isinstance against
  a method's name or class outside misgan_core/methods/.
- A method added in a test (one object, one registry entry) is created, trained, resumed, imputed with,
  listed and evaluated through the Python API, the CLI and a background job, with nothing else changed.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from misgan_core import DataSpec, evaluate_run, list_runs, open_run
from misgan_core.baselines import BASELINES
from misgan_core.catalog import describe, job_for_run, start_job
from misgan_core.cli import main
from misgan_core.imputers import paste_observed
from misgan_core.methods import METHODS, Method, UnknownMethod, method
from misgan_core.methods.baseline import BaselineMethod
from misgan_core.options import OptionError

ROOT = Path(__file__).resolve().parents[1]
SCANNED = ("misgan_core", "pages", "workbench")
REGISTRY = ROOT / "misgan_core" / "methods"


# ---------------------------------------------------------------------------------------------
# The source check


def _method_names() -> set[str]:
    return set(METHODS)


def _method_classes() -> set[str]:
    """Classes that stand for one method: the registry's entries' classes, the trained objects, the networks."""
    classes = {type(m).__name__ for m in METHODS.values()} - {"BaselineMethod", "Method"}
    classes |= {"MisGAN", "BaselineRun"}
    classes |= {getattr(build, "__self__", build).__name__ for build in BASELINES.values()}
    return classes


def _constants(node: ast.AST) -> Iterator[str]:
    """String constants `node` is, or holds as a tuple, list or set display (`kind in ("gain", "convac")`)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        yield node.value
    elif isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        for element in node.elts:
            yield from _constants(element)


def _class_names(node: ast.AST) -> Iterator[str]:
    if isinstance(node, ast.Name):
        yield node.id
    elif isinstance(node, ast.Attribute):
        yield node.attr
    elif isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        for element in node.elts:
            yield from _class_names(element)


def method_branches(source: str, filename: str = "<source>") -> list[str]:
    """Every place in `source` that tests which method it has: a comparison (==, !=, in, not in, is) with a
    method's name or class, a `match` case on one, isinstance / issubclass against a method's class, or
    startswith / endswith a method's name."""
    names, classes = _method_names(), _method_classes()
    found = []

    def hit(node: ast.AST, what: str) -> None:
        found.append(f"{filename}:{node.lineno}: {what}")

    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Compare):
            for operand in (node.left, *node.comparators):
                for value in _constants(operand):
                    if value in names:
                        hit(node, f"compares with the method name {value!r}")
                for name in _class_names(operand):
                    if name in classes:
                        hit(node, f"compares with the method class {name}")
        elif isinstance(node, ast.match_case):
            for sub in ast.walk(node.pattern):
                if isinstance(sub, ast.MatchValue):
                    for value in _constants(sub.value):
                        if value in names:
                            hit(sub.value, f"matches the method name {value!r}")
                elif isinstance(sub, ast.MatchClass):
                    for name in _class_names(sub.cls):
                        if name in classes:
                            hit(sub.cls, f"matches the method class {name}")
        elif isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name) and func.id in ("isinstance", "issubclass") and len(node.args) == 2:
                for name in _class_names(node.args[1]):
                    if name in classes:
                        hit(node, f"{func.id}(..., {name})")
            if isinstance(func, ast.Attribute) and func.attr in ("startswith", "endswith"):
                for arg in node.args:
                    for value in _constants(arg):
                        if value in names:
                            hit(node, f"{func.attr}({value!r})")
    return found


def _engine_sources() -> Iterator[Path]:
    for package in SCANNED:
        for path in sorted((ROOT / package).rglob("*.py")):
            if not path.is_relative_to(REGISTRY):
                yield path


def test_nothing_outside_the_registry_branches_on_a_method() -> None:
    found = []
    scanned = 0
    for path in _engine_sources():
        found += method_branches(path.read_text(), str(path.relative_to(ROOT)))
        scanned += 1
    assert scanned > 30  # the engine, the app and the pages were read
    assert not found, "ask the method's registry entry instead:\n" + "\n".join(found)


@pytest.mark.parametrize("planted", [
    'if kind == "gain":\n    pass\n',
    'if run.kind in ("convac", "mf"):\n    pass\n',
    'x = "misgan" != info.kind\n',
    'match kind:\n    case "zero":\n        pass\n',
    'if isinstance(trainer, BaselineRun):\n    pass\n',
    'if isinstance(t, (int, misgan.MisGAN)):\n    pass\n',
    'if type(model) is MatrixFactorization:\n    pass\n',
    'ok = name.startswith("mean")\n',
])
def test_the_source_check_sees_a_planted_branch(planted: str) -> None:
    assert method_branches(planted), planted


def test_the_source_check_passes_what_asks_the_registry() -> None:
    ok = ('m = METHODS[kind]\nif m.trainable and not m.baseline:\n    pass\nx = config.get("kind", "misgan")\n'
          'if reduction == "sum":\n    pass\n')
    assert method_branches(ok) == []


# ---------------------------------------------------------------------------------------------
# The registry's own surface


def test_every_entry_answers_the_same_questions() -> None:
    assert list(METHODS) == ["misgan", "gain", "convac", "mf", "miwae", "notmiwae", "mean", "zero"]
    for name, m in METHODS.items():
        assert isinstance(m, Method) and m.name == name and method(name) is m
        assert m.title and m.step_unit and m.default_steps >= 1
        assert isinstance(m.defaults(), dict)
        assert m.describe(DataSpec(), {}, 5).startswith(m.title)
    assert [m.name for m in METHODS.values() if m.generates] == ["misgan", "convac", "miwae", "notmiwae"]
    assert [m.name for m in METHODS.values() if not m.trainable] == ["mf", "mean", "zero"]
    assert METHODS["gain"].defaults()["hint_form"] == "published" and METHODS["misgan"].defaults()["arch"] == "fc"
    assert method("misgan").config(DataSpec(), METHODS["misgan"].defaults()) == method("misgan").config(DataSpec())


def test_an_unknown_method_is_a_bad_option_naming_the_choices(capsys) -> None:
    choices = "misgan, gain, convac, mf, miwae, notmiwae, mean, zero"
    with pytest.raises(UnknownMethod, match=f"unknown method 'vae'; choose from {choices}"):
        method("vae")
    assert issubclass(UnknownMethod, OptionError) and issubclass(UnknownMethod, ValueError)
    with pytest.raises(SystemExit):
        main(["baseline", "vae", "--out", "x"])
    assert "invalid choice: 'vae'" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# A method added in a test: one object, one registry entry


@dataclass
class FillConfig:
    lr: float = 0.5
    batch_size: int = 16


class LearntFill(nn.Module):
    """A per-pixel fill value learnt by gradient steps on the observed pixels: the smallest trainable imputer."""

    name = "Fill"

    def __init__(self, shape: tuple[int, int, int], config: FillConfig):
        super().__init__()
        self.config = config
        self.fill = nn.Parameter(torch.zeros(shape))

    @classmethod
    def build(cls, shape: tuple[int, int, int], **options: Any) -> LearntFill:
        return cls(tuple(shape), FillConfig(**options))

    def make_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"fill": torch.optim.SGD(self.parameters(), lr=self.config.lr)}

    def train_step(self, x: torch.Tensor, m: torch.Tensor, optimizers: dict[str, torch.optim.Optimizer],
                   generator: torch.Generator) -> dict[str, float]:
        mb = m.bool().expand_as(x)
        loss = ((self.fill.expand_as(x) - x)[mb] ** 2).mean()
        optimizers["fill"].zero_grad()
        loss.backward()
        optimizers["fill"].step()
        return {"mse": float(loss.detach())}

    @torch.no_grad()
    def impute(self, x: torch.Tensor, m: torch.Tensor, draws: int = 1,
               generator: torch.Generator | None = None) -> torch.Tensor:
        filled = self.fill.to(x.dtype).expand_as(x)
        return paste_observed(x, m, filled).unsqueeze(0).expand(draws, *x.shape).clone()


FILL = BaselineMethod("fill", "Fill", LearntFill.build, options_class=FillConfig, default_steps=3)


@pytest.fixture
def fill_registered(monkeypatch: pytest.MonkeyPatch) -> Method:
    monkeypatch.setitem(METHODS, FILL.name, FILL)  # the one registry line
    return FILL


SPEC = DataSpec(limit=64, mask="dropout", missing_rate=0.5)


def test_a_new_method_runs_through_the_python_api(fill_registered, tmp_path) -> None:
    run = method("fill").create(tmp_path / "a", SPEC, {"lr": 0.25})
    run.train(4)
    assert run.kind == "fill" and run.step == 4 and run.budget()["steps"] == 4
    assert run.trainer.model.config.lr == 0.25
    opened = open_run(tmp_path / "a")
    assert opened.method is FILL and opened.step == 4 and opened.sampler is None and opened.spec == SPEC
    x, m = opened.data.x[:3], opened.data.m[:3]
    draws = opened.impute(x, m, draws=2)
    with pytest.raises(ValueError, match="Fill run, which does not generate"):
        opened.sample(2)
    assert draws.shape == (2, *x.shape) and torch.equal(draws[:, m.bool().expand_as(x)].unique(),
                                                        x[m.bool().expand_as(x)].unique())
    assert not torch.equal(opened.trainer.model.fill, torch.zeros_like(opened.trainer.model.fill))  # it learnt
    result = evaluate_run(tmp_path / "a", n_samples=None)
    assert result["method"] == "Fill" and result["kind"] == "fill" and result["steps"] == 4
    assert result["fid"] is None and result["imputation_fid"] > 0 and result["rmse"] > 0
    info = next(i for i in list_runs(tmp_path, include_demo=False))
    assert info.method is FILL and info.imputes and info.usable and not info.generates
    assert info.title == "Fill · mnist-5k (first 64), dropout 50% · 4 steps"
    assert describe("fill", SPEC, steps=2) == "Fill · mnist-5k (first 64), dropout 50% · 2 steps"


def test_a_new_method_runs_through_the_cli(fill_registered, tmp_path, capsys) -> None:
    out = tmp_path / "b"
    data = ["--dataset", "mnist-5k", "--limit", "64", "--mask", "dropout", "--missing-rate", "0.5"]
    assert main(["baseline", "fill", *data, "--steps", "2", "--set", "lr=0.1", "--out", str(out)]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["kind"] == "fill" and report["step"] == 2
    assert main(["resume", str(out), "--steps", "3"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["step"] == 5
    assert main(["impute", str(out), "-n", "4", "--draws", "2", "--out", str(tmp_path / "imp")]) == 0
    with np.load(tmp_path / "imp.npz") as f:
        assert f["x_imputed"].shape == (2, 4, 1, 28, 28)
    capsys.readouterr()
    assert main(["evaluate", str(out)]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["method"] == "Fill" and result["steps"] == 5 and result["fid"] is None
    assert main(["sample", str(out), "--out", str(tmp_path / "s.png")]) == 2
    err = capsys.readouterr().err
    assert "Fill run, which does not generate; sample from a MisGAN, ConvAC, MIWAE or not-MIWAE run" in err


def test_a_new_method_trains_as_a_background_job(fill_registered, tmp_path) -> None:
    from misgan_core.jobs import JobRegistry

    registry_ = JobRegistry()
    job, started = start_job("fill", SPEC, {"lr": 0.1}, steps=3, seed=1, root=tmp_path, registry_=registry_)
    assert started and job.kind == "fill"
    job.join(timeout=120)
    snap = job.snapshot()
    assert snap.error is None and snap.status == "finished" and snap.step == 3, snap
    assert job_for_run(job.key, registry_) is job
    assert open_run(job.key).step == 3 and Path(job.key).name.startswith("fill-mnist-5k-dropout50-")
