"""Plug-ins declare themselves: an algorithm defined in a test module trains, resumes bitwise, runs in the lab and
shows in --help with no other file touched; every registered metric listed alone is computed and signed on each
data source where it applies, and is a one-line error where it cannot; old keys mean what they meant; and no
module of relgan imports in a circle."""

import ast
import json
import random
import re
import shutil
from dataclasses import dataclass

import pytest
import torch
from safetensors.torch import load_file

from experiments.gradient_lab import estimators
from relgan.algorithms.base import REGISTERED
from relgan.algorithms.relgan import RelaxedStepDraws, RelGAN
from relgan.checkpoint import complete_checkpoints
from relgan.cli import main
from relgan.config import setting
from relgan.errors import ConfigError
from relgan.gradient_lab import estimate, estimator_config, exact_gradient, make_lab
from relgan.metrics.registry import METRICS
from relgan.plugins import catalogue, load_config

from conftest import REPO, SMOKE, SMOKE_TEXT

SHORT = ["mle.epochs=1", "adversarial.steps=4", "adversarial.eval_every=2", "adversarial.checkpoint_every=2"]


@pytest.fixture
def tempered():
    """An algorithm of this module's own: RelGAN whose discriminator sees the relaxation at scale * beta."""
    before = dict(REGISTERED)

    @dataclass
    class TemperedOptions:
        scale: float = setting(0.5, "the discriminator sees softmax(scale * beta (o + g))", gt=0.0)

    class Tempered(RelGAN):
        name = "tempered"
        summary = "RelGAN at a fraction of beta (a test's algorithm)"
        Options = TemperedOptions

        def discriminator_input(self, generator, beta, step: RelaxedStepDraws):
            return super().discriminator_input(generator, beta * self.options.scale, step)

    yield Tempered
    REGISTERED.clear()
    REGISTERED.update(before)


def _records(run):
    return [{k: v for k, v in json.loads(line).items() if k != "seconds"}
            for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_an_algorithm_defined_in_a_test_trains_resumes_bitwise_runs_in_the_lab_and_shows_in_help(
        tmp_path, capsys, tempered):
    args = ["train", "--config", str(SMOKE), f"run.output_dir={tmp_path}", "run.name=whole", *SHORT,
            "adversarial.algorithm=tempered", "adversarial.scale=0.25"]
    assert main(args) == 0
    whole = tmp_path / "whole"
    last = _records(whole)[-1]
    assert last["phase"] == "adversarial" and {"g_loss", "d_loss", "beta"} <= set(last)  # relaxed: beta logged
    assert load_config(whole / "config.yaml").adversarial.options.scale == 0.25
    resumed = tmp_path / "resumed"
    shutil.copytree(whole, resumed)
    shutil.rmtree(complete_checkpoints(resumed)[-1])
    shutil.rmtree(resumed / "generator")
    assert main([*args[:3], f"run.output_dir={tmp_path}", "run.name=resumed", *args[5:], "--resume"]) == 0
    left, right = (load_file(str(run / "generator" / "model.safetensors")) for run in (whole, resumed))
    assert all(torch.equal(left[k], right[k]) for k in left)
    assert _records(resumed) == _records(whole)

    assert ("tempered", tempered, {}) in [(label, cls, options) for label, cls, options, _ in estimators()]
    lab = make_lab()
    exact = exact_gradient(lab)[0]
    drawn = estimate(lab, estimator_config("tempered", scale=0.5), beta=2.0, batch_size=16, repeats=20)
    assert drawn.draws.shape == (20, exact.numel()) and torch.isfinite(drawn.draws).all()
    assert torch.nn.functional.cosine_similarity(drawn.mean, exact, dim=0) > 0.5

    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    shown = capsys.readouterr().out
    assert "tempered: RelGAN at a fraction of beta" in shown
    assert "adversarial.scale (a number; default 0.5): the discriminator sees" in shown
    assert re.search(r"adversarial\.algorithm \([^)]*\|tempered", shown)


def test_an_option_of_another_algorithm_and_an_unknown_key_are_one_line_errors(tempered):
    with pytest.raises(ConfigError, match=re.escape(
            "adversarial.scale = 0.25 has no effect with adversarial.algorithm = 'relgan'; it counts with "
            "adversarial.algorithm=tempered")):
        load_config(SMOKE, ["adversarial.scale=0.25"])
    with pytest.raises(ConfigError, match=re.escape("adversarial.scale = 0.0 is out of range; it must be > 0.0")):
        load_config(SMOKE, ["adversarial.algorithm=tempered", "adversarial.scale=0"])
    REGISTERED.pop("tempered")
    with pytest.raises(ConfigError, match=re.escape("unknown key 'adversarial.scale'")):
        load_config(SMOKE, ["adversarial.scale=0.25"])


def test_two_algorithms_may_share_an_option_only_as_the_same_setting(tempered):
    @dataclass
    class Clashing:
        scale: float = setting(2.0, "another scale", gt=0.0)

    class Other(RelGAN):
        name = "other"
        summary = "declares scale with another default"
        Options = Clashing

    with pytest.raises(ConfigError, match=re.escape("adversarial.scale is declared twice, differently")):
        catalogue()


def test_an_algorithm_name_is_registered_once(tempered):
    with pytest.raises(TypeError, match="two algorithms are named 'tempered'"):
        type("Again", (RelGAN,), {"name": "tempered", "summary": "again"})


# ------------------------------------------------------------------------------------------ metrics


def _text_files(tmp_path):
    words = "a man rides a horse on the beach dog runs in park with ball".split()
    rng = random.Random(0)
    lines = [" ".join(rng.choice(words) for _ in range(rng.randint(3, 7))) for _ in range(120)]
    (tmp_path / "train.txt").write_text("\n".join(lines[:90]) + "\n")
    (tmp_path / "test.txt").write_text("\n".join(lines[90:]) + "\n")
    return [f"data.train_file={tmp_path / 'train.txt'}", f"data.test_file={tmp_path / 'test.txt'}"]


def _keys(metric, orders):
    for value in metric.values:
        yield from ([value.key.format(n=n) for n in orders] if "{n}" in value.key else [value.key])


@pytest.mark.slow  # 18 short runs; test_a_metric_that_needs_references... is the fast tier's
@pytest.mark.parametrize("source", ["oracle", "files"])
@pytest.mark.parametrize("name", list(METRICS))
def test_every_metric_listed_alone_is_computed_and_signed_or_refused_in_one_line(tmp_path, capsys, name, source):
    config, data = (SMOKE, []) if source == "oracle" else (SMOKE_TEXT, _text_files(tmp_path))
    args = ["train", "--config", str(config), f"run.output_dir={tmp_path}", "run.name=alone", *data,
            "mle.epochs=1", "adversarial.steps=0", f"eval.metrics=[{name}]", "eval.bleu_orders=[2,3]"]
    problem = METRICS[name].obstacle(load_config(config, [*data, "mle.epochs=1", "adversarial.steps=0"]))
    if problem is not None:
        assert main(args) == 2
        err = capsys.readouterr().err.strip()
        assert err.splitlines() == [f"error: eval.metrics: {name} cannot be computed here: {problem}; remove it "
                                    "from the list"], err
        return
    assert main(args) == 0
    evaluation = [r for r in _records(tmp_path / "alone") if "signatures" in r][-1]
    assert set(evaluation["signatures"]) == {name}
    assert evaluation["signatures"][name].startswith(f"{name}|")
    assert all(key in evaluation for key in _keys(METRICS[name], [2, 3]))


def test_a_metric_that_needs_references_on_the_oracle_is_a_one_line_error(tmp_path, capsys):
    assert main(["train", "--config", str(SMOKE), f"run.output_dir={tmp_path}", "--dry-run",
                 "eval.metrics=[nll_test,bw_bleu]"]) == 2
    assert capsys.readouterr().err.strip() == (
        "error: eval.metrics: bw_bleu cannot be computed here: it needs real text as references (data.source=files "
        "or hub); remove it from the list")


def test_the_default_metrics_are_those_that_apply_to_the_data_source(tmp_path):
    defaults = [name for name, metric in METRICS.items() if metric.default]
    oracle = load_config(None)
    text = load_config(SMOKE_TEXT, [*_text_files(tmp_path), "eval.metrics=null"])
    assert oracle.eval.metrics == [n for n in defaults if METRICS[n].obstacle(oracle) is None] != defaults
    assert text.eval.metrics == [n for n in defaults if METRICS[n].obstacle(text) is None] != defaults
    old = load_config(SMOKE_TEXT, [*_text_files(tmp_path), f"eval.metrics=[{','.join(defaults)}]"])
    assert old.eval.metrics == text.eval.metrics  # configs saved before null was the default


# ------------------------------------------------------------------------------------------ old configs


def test_old_configs_and_their_algorithm_keys_load_and_mean_the_same(tmp_path):
    saved = SMOKE.read_text().replace(
        "adversarial: {steps: 6,",
        "adversarial: {algorithm: seqgan, loss: standard, rollouts: 3, baseline: mean, rao_samples: 10, steps: 6,")
    saved = saved.replace("gumbel: {beta_max: 10, schedule: exp}", "gumbel: {straight_through: false}")
    path = tmp_path / "old.yaml"
    path.write_text(saved)
    config = load_config(path)
    assert config.adversarial.algorithm == "seqgan"
    assert (config.adversarial.options.rollouts, config.adversarial.options.baseline) == (3, "mean")
    written = config.to_dict()["adversarial"]
    assert (written["rollouts"], written["baseline"]) == (3, "mean") and "rao_samples" not in written
    rao = load_config(SMOKE, ["adversarial.algorithm=gumbel-rao", "adversarial.rao_samples=3",
                              "adversarial.rollouts=16"])
    assert rao.adversarial.options.rao_samples == 3  # rollouts = 16 is seqgan's default: no effect, no error


# ------------------------------------------------------------------------------------------ imports


def _imports(path, package_root, modules):
    """The modules of ``modules`` a file imports, at any level (function bodies and TYPE_CHECKING blocks too);
    ``from package import module`` imports that module (a package's own __init__ is not counted as imported)."""
    module = ".".join(path.relative_to(package_root.parent).with_suffix("").parts)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    module = module.removesuffix(".__init__")
    package = package.removesuffix(".__init__")
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            for alias in node.names:
                yield f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base


def test_no_relgan_module_imports_in_a_circle():
    root = REPO / "relgan"
    files = {".".join(p.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__"): p
             for p in root.rglob("*.py")}
    graph = {name: {target for target in _imports(path, root, files) if target in files and target != name}
             for name, path in files.items()}
    done, path = set(), []

    def visit(node):
        if node in path:
            raise AssertionError(" -> ".join([*path[path.index(node):], node]))
        if node in done:
            return
        path.append(node)
        for target in sorted(graph[node]):
            visit(target)
        path.pop()
        done.add(node)

    for name in sorted(graph):
        visit(name)
    assert sum(map(len, graph.values())) > 100  # the graph was read
