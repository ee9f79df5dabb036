"""Choosing and applying backends: the reference models stay pure, fast paths apply only where verified for the
code (fingerprints) and on the machine (parity probe), and a changed model runs its own mathematics."""

import ast
import json
import logging
import re

import pytest
import torch

from relgan import fast
from relgan.config import DiscriminatorConfig, GeneratorConfig
from relgan.fast import backend, build, fingerprint, parity
from relgan.fast.verify import current_fingerprints
from relgan.losses import gan_losses
from relgan.models import Discriminator, Generator
from relgan.models.relational_memory import RelationalMemory

from conftest import REPO, SMOKE, run_cli

PURE = [*sorted((REPO / "relgan" / "models").glob("*.py")), REPO / "relgan" / "gumbel.py"]


def _models(seed: int = 0):
    torch.manual_seed(seed)
    g = parity._perturbed(Generator(GeneratorConfig(embedding_dim=8, num_heads=2, head_size=8), 13, 6, 4))
    d = parity._perturbed(Discriminator(DiscriminatorConfig(embedding_dim=8, num_representations=4,
                                                            filter_sizes=[2, 3], num_filters=5, hidden_size=6), 13, 6))
    return g, d


@pytest.fixture
def probe_cache(tmp_path, monkeypatch):
    """Probes write to a fresh cache file (the real one lives beside each build)."""
    path = tmp_path / "probes.json"
    monkeypatch.setattr(backend, "probe_cache", lambda kernels: path)
    return path


@pytest.mark.parametrize("path", PURE, ids=lambda p: p.name)
def test_reference_models_import_nothing_of_the_fast_code(path):
    tree = ast.parse(path.read_text())
    imported = [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
    imported += [node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
    assert not [name for name in imported if name.startswith("relgan.fast") or "cpp_extension" in name]
    assert "torch.ops" not in path.read_text() and "relgan.native" not in imported


def test_verified_fingerprints_are_those_of_the_current_code():
    assert fingerprint.verified() == current_fingerprints(), (
        f"relgan/models changed since the fast paths were verified: run `{fingerprint.VERIFY_COMMAND}`")


def test_fingerprints_ignore_docstrings_and_comments_but_not_code(tmp_path, monkeypatch):
    sources = {"a": 'def f(x):\n    """One docstring."""\n    return x + 1.0  # a comment\n',
               "b": 'def f(x):\n    """Another."""\n\n    return x + 1.0\n',
               "c": "def f(x):\n    return x + 2.0\n"}
    monkeypatch.syspath_prepend(str(tmp_path))
    functions = {}
    for name, source in sources.items():
        (tmp_path / f"fingerprint_{name}.py").write_text(source)
        functions[name] = __import__(f"fingerprint_{name}").f
    syntax = {name: fingerprint._syntax(function) for name, function in functions.items()}
    assert syntax["a"] == syntax["b"] != syntax["c"]


@pytest.mark.parametrize("edit, falls_back", [
    (("tokens.append(token)", "tokens.append(token)  # a comment", 1), False),  # comments are not code
    (("uniforms[sampling, t].contiguous(), 1.0)", "uniforms[sampling, t].contiguous(), 0.9)", 1), True),  # the
    # temperature of the fast rollout's draws, in its Python wrapper
])
def test_an_edited_fast_path_wrapper_falls_back_with_its_warning(edit, falls_back, tmp_path, monkeypatch, caplog):
    import shutil

    copy = tmp_path / "fast"
    shutil.copytree(fingerprint.FAST_DIR, copy)
    wrapper = copy / "generator.py"
    old, new, count = edit
    assert old in wrapper.read_text()
    wrapper.write_text(wrapper.read_text().replace(old, new, count))
    monkeypatch.setattr(fingerprint, "FAST_DIR", copy)
    g, d = _models()
    with caplog.at_level(logging.WARNING, logger="relgan"):
        report = fast.apply(g, d)
    assert ("Generator" in report.reference) == falls_back
    if falls_back:
        assert "fast.verify" in report.reference["Generator"] and not fast.fast_paths(g)
        assert "Generator runs its reference code" in caplog.text


def test_apply_replaces_the_verified_methods_and_says_so(default_kernels, probe_cache, caplog):
    g, d = _models()
    with caplog.at_level(logging.INFO, logger="relgan"):
        report = fast.apply(g, d)
    assert report.backend == "fast" and report.isa == default_kernels.isa and not report.reference
    assert fast.fast_paths(g.core) == ("unroll", "step")
    assert fast.fast_paths(g) == ("token_nll", "sample", "sample_tokens", "rollout")
    assert fast.fast_paths(d) == ("classify",)
    [line] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("backend:")]
    assert f"built for {default_kernels.isa}" in line and "RelationalMemory.unroll/step" in line
    assert "Generator.token_nll/sample/sample_tokens/rollout" in line and "Discriminator.classify" in line
    assert json.loads(probe_cache.read_text())  # the probes ran once and were kept
    fast.remove(g)
    fast.remove(d)
    assert not fast.fast_paths(g) and not fast.fast_paths(g.core) and "token_nll" not in vars(g)


def test_reference_setting_and_the_environment_switch(monkeypatch):
    g, d = _models()
    assert fast.apply(g, d, setting="reference").replaced == []
    assert not fast.fast_paths(g.core)
    monkeypatch.setenv(backend.DISABLE_VARIABLE, "0")
    monkeypatch.delenv(backend.REQUIRE_VARIABLE, raising=False)
    assert fast.apply(g, d).backend == "reference" and not fast.fast_paths(d)


def test_fast_setting_without_kernels_is_an_error_and_auto_falls_back(monkeypatch, caplog):
    def unavailable(isa):
        raise build.KernelsUnavailable("no compiler here")

    monkeypatch.setattr(build, "load", unavailable)
    g, d = _models()
    with pytest.raises(fast.BackendError, match=re.escape("run.backend=fast: no compiler here")):
        fast.apply(g, setting="fast")
    monkeypatch.delenv(backend.REQUIRE_VARIABLE, raising=False)
    with caplog.at_level(logging.WARNING, logger="relgan"):
        assert fast.apply(g, d).backend == "reference"
    assert "C++ CPU kernels unavailable (no compiler here)" in caplog.text


def _g_step_gradients(g: Generator, d: Discriminator, noise: torch.Tensor) -> dict[str, torch.Tensor]:
    g.zero_grad(set_to_none=True)
    _, fake = g(mode="sample", batch_size=noise.shape[0], beta=3.0, noise=noise)
    real = torch.randint(0, 13, (noise.shape[0], 6), generator=torch.Generator().manual_seed(1))
    d.eval()
    _, g_loss = gan_losses("rsgan", d(real)[0], d(fake)[0])
    g_loss.backward()
    return {name: p.grad.clone() for name, p in g.named_parameters()}


@pytest.mark.parametrize("change", ["output layer", "rmc step"])
def test_a_changed_model_runs_its_own_mathematics(change, default_kernels, probe_cache, monkeypatch, caplog):
    """Tie the output layer to the embedding (or change the RMC step): the backend keeps the reference code for
    that module, says so, and the G step's gradients are autograd's of the changed model."""
    if change == "output layer":
        monkeypatch.setattr(Generator, "output_logits",
                            lambda self, hidden: self.output(hidden) + hidden[..., :8] @ self.embedding.T)
        changed = "Generator"
    else:
        reference_step = RelationalMemory.step

        def step(self, inputs, memory):
            output, next_memory = reference_step(self, inputs, memory)
            return 0.5 * output, 0.5 * next_memory

        monkeypatch.setattr(RelationalMemory, "step", step)
        changed = "RelationalMemory"
    g, d = _models()
    noise = -torch.log(-torch.log(torch.rand(4, 6, 13, generator=torch.Generator().manual_seed(2))))
    expected = _g_step_gradients(g, d, noise)
    with caplog.at_level(logging.INFO, logger="relgan"):
        report = fast.apply(g, d)
    assert changed in report.reference and "fast.verify" in report.reference[changed]
    assert f"{changed} runs its reference code" in caplog.text and "python -m relgan.fast.verify" in caplog.text
    assert "Discriminator.classify" in " ".join(report.replaced)  # the unchanged modules keep their fast paths
    replaced = fast.fast_paths(g) if changed == "Generator" else fast.fast_paths(g.core)
    assert replaced == ()
    got = _g_step_gradients(g, d, noise)
    for name, grad in expected.items():
        assert grad.abs().sum() > 0, name
        assert parity.mismatch(name, got[name], grad) == [], name


@pytest.mark.slow
def test_a_kernel_that_disagrees_on_this_machine_is_switched_off(default_kernels, probe_cache, monkeypatch, caplog):
    monkeypatch.setitem(parity.CHECKS, "discriminator", lambda *args, **kwargs: ["logits: max |diff| = 0.12"])
    g, d = _models()
    with caplog.at_level(logging.WARNING, logger="relgan"):
        report = fast.apply(g, d)
    disagreement = "disagrees with the reference on this machine (logits: max |diff| = 0.12)"
    assert disagreement in report.reference["Discriminator"]
    assert fast.fast_paths(d) == () and fast.fast_paths(g) != ()
    assert "Discriminator runs its reference code" in caplog.text
    monkeypatch.setitem(parity.CHECKS, "discriminator", lambda *args, **kwargs: pytest.fail("probed twice"))
    assert "Discriminator" in fast.apply(*_models()).reference  # the cached verdict


def test_builds_are_keyed_by_instruction_set_and_sources(monkeypatch, tmp_path):
    names = {isa: build.build_name(isa) for isa in build.X86_ISAS}
    assert len(set(names.values())) == 3 and all(name.startswith(f"relgan_{isa}_") for isa, name in names.items())
    changed = tmp_path / "extra.cpp"
    changed.write_text("// another kernel\n")
    monkeypatch.setattr(build, "SOURCES", [*build.SOURCES, changed])
    assert build.build_name("avx2") != names["avx2"]
    assert "baseline" in build.executable_isas() or build.executable_isas() == ["generic"]


def test_a_build_names_no_checkout_so_two_checkouts_share_it(default_kernels, tmp_path):
    """The build compiles sources staged in its own directory: nothing of its compile arguments names the
    checkout, which made torch rebuild each checkout's kernels in turn."""
    ninja = (default_kernels.build_dir / "build.ninja").read_text()
    assert str(build.CSRC) not in ninja and str(default_kernels.build_dir / build.STAGED) in ninja
    for source in [*build.SOURCES, *build.HEADERS]:
        assert (default_kernels.build_dir / build.STAGED / source.name).read_bytes() == source.read_bytes()


def test_two_processes_checking_that_a_build_compiles_compile_it_once(tmp_path, monkeypatch):
    """Two test workers reach the AVX-512 compile check together: the second waits on the lock, then finds the
    first's marker. Threads stand in for processes (each opens the lock file itself, and flock is per open file)."""
    import threading
    import time

    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    compiles = []

    def slow_compile(isa, name, build_dir):
        compiles.append(isa)
        time.sleep(0.2)

    monkeypatch.setattr(build, "_compile_object", slow_compile)
    workers = [threading.Thread(target=build.compile_only, args=("avx512",)) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert compiles == ["avx512"]


@pytest.mark.slow
def test_a_lock_left_by_a_killed_build_neither_hangs_nor_stops_a_later_load(default_kernels):
    import subprocess
    import sys

    # What torch's baton leaves when its build is killed, written under relgan's lock just before the load: a
    # relgan process loading beside this test (another pytest worker) can neither remove it first nor be the
    # live build whose baton it is.
    code = (
        "import fcntl, pathlib\n"
        "from relgan.fast import build\n"
        f"directory = pathlib.Path({str(default_kernels.build_dir)!r})\n"
        "with open(directory / 'relgan.lock', 'a') as handle:\n"
        "    fcntl.flock(handle, fcntl.LOCK_EX)\n"
        "    (directory / 'lock').write_text('')\n"
        f"print(build.load({default_kernels.isa!r}).name)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == default_kernels.name, result.stderr[-2000:]
    # had the stale lock stayed, torch would have waited on it until the timeout
    assert "a build was killed before it ended; its lock file is removed" in result.stderr


@pytest.mark.slow
def test_the_cli_names_the_backend_in_one_line(tmp_path):
    result = run_cli("train", "--config", str(SMOKE), f"run.output_dir={tmp_path}", "--dry-run", cwd=REPO)
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("info: backend:")]
    assert len(lines) == 1 and "replace RelationalMemory.unroll/step" in lines[0], result.stderr
    assert json.loads(result.stdout)["backend"] == lines[0].removeprefix("info: ")
