"""Nothing lost, nothing silent: run names, --overwrite, the one-writer lock, damaged logs, full disks and unwritable
places, every numeric setting checked, resume keeping what it resumes, and sentence lengths."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

import relgan.bookkeeping as bookkeeping
from relgan.checkpoint import complete_checkpoints
from relgan.cli import main
from relgan.run_directory import LOCK_FILE, RunLock

from conftest import REPO, SMOKE, SMOKE_TEXT

QUICK = ["mle.epochs=1", "adversarial.steps=4", "adversarial.eval_every=2", "adversarial.checkpoint_every=2"]


def _train(tmp_path, *overrides, name="run"):
    return main(["train", "--config", str(SMOKE), f"run.output_dir={tmp_path}", f"run.name={name}", *QUICK, *overrides])


def _one_line_error(capsys, *fragments):
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in "\n".join(err), err
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    return errors[0]


@pytest.fixture
def neighbours(tmp_path):
    """Another run and a file beside the run directory: what must survive every refusal."""
    (tmp_path / "other-run").mkdir()
    (tmp_path / "other-run" / "config.yaml").write_text("kept\n")
    (tmp_path / "notes.txt").write_text("kept\n")
    return tmp_path


def _survived(tmp_path):
    assert (tmp_path / "other-run" / "config.yaml").read_text() == "kept\n"
    assert (tmp_path / "notes.txt").read_text() == "kept\n"


@pytest.mark.parametrize("name", [".", "..", "a/b", "/tmp/abs"])
def test_a_run_name_is_a_plain_directory_name(neighbours, capsys, name):
    assert main(["train", "--config", str(SMOKE), f"run.output_dir={neighbours}", f"run.name={name}", "--overwrite",
                 *QUICK]) == 2
    _one_line_error(capsys, "must be a plain directory name")
    _survived(neighbours)


@pytest.mark.slow
def test_overwrite_deletes_only_a_relgan_run_directory(neighbours, capsys):
    stranger = neighbours / "photos"
    stranger.mkdir()
    (stranger / "holiday.jpg").write_bytes(b"jpeg")
    assert _train(neighbours, "--overwrite", name="photos") == 2
    _one_line_error(capsys, "is not a relgan run directory", "holiday.jpg", "nothing was deleted")
    assert (stranger / "holiday.jpg").read_bytes() == b"jpeg"
    assert _train(neighbours, name="mine") == 0
    assert _train(neighbours, "--overwrite", name="mine") == 0  # a run directory: overwritten
    _survived(neighbours)


def test_overwrite_refuses_a_directory_that_only_looks_like_a_run(neighbours, capsys):
    lookalike = neighbours / "project"
    (lookalike / "src").mkdir(parents=True)
    (lookalike / "config.yaml").write_text("mine: true\n")
    (lookalike / "src" / "train.py").write_text("print('mine')\n")
    (lookalike / "notes.md").write_text("notes\n")
    assert _train(neighbours, "--overwrite", name="project") == 2
    _one_line_error(capsys, "is not a relgan run directory (no .relgan-run marker", "nothing was deleted")
    assert (lookalike / "src" / "train.py").read_text() == "print('mine')\n"
    assert (lookalike / "notes.md").read_text() == "notes\n" and (lookalike / "config.yaml").is_file()


@pytest.mark.slow
def test_a_second_writer_is_refused_naming_the_first(tmp_path, capsys):
    assert _train(tmp_path) == 0
    run = tmp_path / "run"
    records = (run / "metrics.jsonl").read_text()
    holder = RunLock(run)
    holder.acquire()
    try:
        for extra in (["--resume"], ["--overwrite"]):
            assert _train(tmp_path, *extra) == 2
            _one_line_error(capsys, str(run), f"pid {os.getpid()}")
    finally:
        holder.release()
    assert (run / "metrics.jsonl").read_text() == records  # neither writer touched the run
    assert _train(tmp_path, "--overwrite") == 0


@pytest.mark.slow
def test_a_lock_file_left_by_a_killed_run_does_not_block(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / LOCK_FILE).write_text("999999\n")  # no process holds it
    assert _train(tmp_path) == 0


@pytest.mark.slow
def test_the_lock_is_released_when_the_writer_is_killed(tmp_path):
    command = [sys.executable, "-m", "relgan", "train", "--config", str(SMOKE), f"run.output_dir={tmp_path}",
               "run.name=run", "mle.epochs=2000", "mle.eval_every=1000", "mle.checkpoint_every=1000"]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while not (tmp_path / "run" / "config.yaml").exists():
        assert process.poll() is None and time.time() < deadline
        time.sleep(0.05)
    blocked = subprocess.run([*command, "--resume"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert blocked.returncode == 2 and f"pid {process.pid}" in blocked.stderr
    process.kill()
    process.wait(timeout=30)
    holder = RunLock(tmp_path / "run")
    holder.acquire()  # free again
    holder.release()


@pytest.mark.slow
def test_a_torn_last_log_line_is_dropped_on_resume(tmp_path, capsys):
    assert _train(tmp_path) == 0
    run = tmp_path / "run"
    whole = (run / "metrics.jsonl").read_bytes()
    shutil.rmtree(complete_checkpoints(run)[-1])
    (run / "metrics.jsonl").write_bytes(whole[:-40])  # the last evaluation's line, torn
    capsys.readouterr()
    assert _train(tmp_path, "--resume") == 0
    assert "its last line is torn" in capsys.readouterr().err
    lines = (run / "metrics.jsonl").read_text().splitlines()
    steps = [json.loads(line)["step"] for line in whole.decode().splitlines()]
    assert [json.loads(line)["step"] for line in lines] == steps


@pytest.mark.slow
def test_a_corrupt_log_line_elsewhere_is_a_one_line_error(tmp_path, capsys):
    assert _train(tmp_path) == 0
    run = tmp_path / "run"
    lines = (run / "metrics.jsonl").read_text().splitlines()
    lines[1] = lines[1][:20]
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    shutil.rmtree(complete_checkpoints(run)[-1])
    assert _train(tmp_path, "--resume") == 2
    _one_line_error(capsys, "metrics.jsonl: line 2 is not a JSON record")


@pytest.mark.parametrize("damage, message", [
    ("array", "metrics.jsonl: line 2 is JSON but not an evaluation record (an object with a phase)"),
    ("directory", "metrics.jsonl: is not a file"),
])
@pytest.mark.slow
def test_a_metrics_log_that_is_no_log_is_a_one_line_error(finished_run, tmp_path, capsys, damage, message):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    shutil.rmtree(complete_checkpoints(run)[-1])
    log = run / "metrics.jsonl"
    if damage == "array":
        lines = log.read_text().splitlines()
        log.write_text("\n".join([lines[0], "[1, 2, 3]", *lines[1:]]) + "\n")
    else:
        log.unlink()
        log.mkdir()
    assert _train(tmp_path, "--resume") == 2
    _one_line_error(capsys, message)


def test_a_nul_character_in_a_yaml_run_name_is_a_one_line_error(tmp_path, capsys):
    config = tmp_path / "nul.yaml"
    config.write_text(SMOKE.read_text().replace("run: {", 'run: {name: "bad\\0name", '))
    assert main(["train", "--config", str(config), f"run.output_dir={tmp_path}", "--dry-run"]) == 2
    _one_line_error(capsys, "run.name contains a NUL character")


@pytest.mark.slow
def test_a_full_disk_during_an_evaluation_is_one_line_and_leaves_no_temporary_file(tmp_path, capsys, monkeypatch):
    import errno

    from relgan import io_utils

    synced = io_utils.os.fsync

    def filling(fd):
        if "samples" in os.readlink(f"/proc/self/fd/{fd}"):  # the evaluation's samples file
            raise OSError(errno.ENOSPC, "No space left on device")
        return synced(fd)

    monkeypatch.setattr(io_utils.os, "fsync", filling)
    assert _train(tmp_path) == 2
    _one_line_error(capsys, "no space left on the device; free some (nothing partial was left)")
    assert not [p for p in (tmp_path / "run").rglob("*") if ".tmp" in p.name]


@pytest.mark.slow
def test_a_full_disk_during_a_checkpoint_is_one_line_and_leaves_no_partial_checkpoint(tmp_path, capsys, monkeypatch):
    from accelerate import Accelerator

    save_state, calls = Accelerator.save_state, []

    def filling(self, directory, **kwargs):
        calls.append(directory)
        if len(calls) == 2:  # the second checkpoint: the disk fills half way through
            (bookkeeping.Path(directory) / "model.safetensors").write_bytes(b"partial")
            raise RuntimeError("[enforce fail at inline_container.cc:626] . unexpected pos; No space left on device")
        return save_state(self, directory, **kwargs)

    monkeypatch.setattr(Accelerator, "save_state", filling)
    assert _train(tmp_path) == 2
    line = _one_line_error(capsys, "no space left on the device for this checkpoint", "MB are free", "--resume")
    run = tmp_path / "run"
    assert "step-00000010" in line and "last complete checkpoint: " in line and "step-00000008" in line
    assert not list((run / "checkpoints").glob(".tmp-*"))
    assert len(complete_checkpoints(run)) == 1  # the earlier one survives


def test_output_files_are_checked_before_any_sampling(tmp_path, capsys, monkeypatch, smoke_run):
    import relgan.sampling

    monkeypatch.setattr(relgan.sampling, "sample_ids", lambda *a, **k: pytest.fail("sampled before checking --out"))
    for out, fragment in ((tmp_path / "missing" / "x.txt", "does not exist"), (tmp_path, "is a directory")):
        assert main(["sample", "--run", str(smoke_run), "--out", str(out)]) == 2
        _one_line_error(capsys, "--out", fragment)
        assert main(["evaluate", "--run", str(smoke_run), "--metrics", "nll_oracle", "--out", str(out)]) == 2
        _one_line_error(capsys, "--out", fragment)


def test_an_unwritable_place_is_one_line(tmp_path, capsys, monkeypatch, smoke_run):
    from pathlib import Path

    def refuse(self, data):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "write_bytes", refuse)  # as a read-only folder answers, whoever the user is
    assert main(["sample", "--run", str(smoke_run), "--out", str(tmp_path / "x.txt")]) == 2
    _one_line_error(capsys, "cannot write there (Permission denied)")
    assert _train(tmp_path, name="fresh") == 2
    _one_line_error(capsys, "run directory", "cannot write there")


@pytest.mark.parametrize("args, fragment", [
    (["sample", "--num", "0"], "--num must be >= 1"),
    (["sample", "--num", "-5"], "--num must be >= 1"),
    (["sample", "--temperature", "0"], "--temperature: a temperature must be a finite number > 0"),
    (["sample", "--temperature", "-1"], "--temperature"),
    (["sample", "--temperature", "inf"], "--temperature"),
    (["sample", "--temperature", "nan"], "--temperature"),
    (["sample", "--batch-size", "0"], "--batch-size must be >= 1"),
    (["evaluate", "--num-samples", "0"], "--num-samples must be >= 1"),
    (["evaluate", "--num-samples", "-3"], "--num-samples must be >= 1"),
    (["evaluate", "--metrics", "bleu,foo"], "unknown metric 'foo'; known: bleu, bw_bleu, self_bleu"),
    (["evaluate", "--metrics", "foo"], "unknown metric 'foo'"),
    (["evaluate", "--temperature-sweep", "1,nan"], "--temperature-sweep"),
    (["evaluate", "--tokenize", "char"], "--tokenize has no effect with --run"),
])
def test_bad_flags_are_one_line_errors(capsys, smoke_run, args, fragment):
    assert main([args[0], "--run", str(smoke_run), *args[1:]]) == 2
    _one_line_error(capsys, fragment)


@pytest.mark.parametrize("args", [["sample", "--num", "2"], ["evaluate", "--metrics", "nll_test"]])
def test_an_output_in_a_place_that_cannot_be_written_is_one_line(capsys, smoke_run, args):
    assert main([args[0], "--run", str(smoke_run), *args[1:], "--out", "/proc/relgan-out.txt"]) == 2
    _one_line_error(capsys, "--out /proc/relgan-out.txt: cannot write there")


def test_evaluating_a_read_only_run_is_one_line_and_leaves_nothing(capsys, smoke_run, tmp_path, monkeypatch):
    """As root a chmod does not stop a write; the file system's answer is what the run meets."""
    import errno

    from relgan import io_utils

    run = tmp_path / "done"
    shutil.copytree(smoke_run, run)

    def read_only(source, target):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(io_utils.os, "replace", read_only)
    assert main(["evaluate", "--run", str(run), "--metrics", "nll_test"]) == 2
    _one_line_error(capsys, "evaluation-relgan.json: cannot write it (Read-only file system); nothing partial")
    assert not [p for p in run.iterdir() if ".tmp" in p.name or p.name.startswith("evaluation")]


def test_resuming_a_read_only_run_is_one_line(finished_run, tmp_path, capsys, monkeypatch):
    import errno
    from pathlib import Path

    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    saved = (run / "config.yaml").read_bytes()
    writes = Path.write_bytes

    def read_only(path, data):
        if path.parent == run:  # the run directory's write probe: the file system refuses it
            raise OSError(errno.EROFS, "Read-only file system")
        return writes(path, data)

    monkeypatch.setattr(Path, "write_bytes", read_only)
    assert _train(tmp_path, "adversarial.steps=6", "gumbel.horizon=8", "--resume") == 2
    _one_line_error(capsys, "cannot write there (Read-only file system)")
    assert (run / "config.yaml").read_bytes() == saved


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_asking_for_cuda_without_it_is_one_line(capsys, smoke_run):
    assert main(["sample", "--run", str(smoke_run), "--device", "cuda"]) == 2
    _one_line_error(capsys, "--device cuda: no such CUDA device")


@pytest.mark.parametrize("override", ["mle.lr=nan", "adversarial.d_lr=nan", "discriminator.dropout=nan",
                                      "gumbel.beta_max=nan", "gumbel.beta_max=inf", "adversarial.gp_weight=inf"])
def test_non_finite_settings_are_refused(tmp_path, capsys, override):
    extra = ["adversarial.loss=wgan-gp"] if "gp_weight" in override else []
    assert _train(tmp_path, override, *extra) == 2
    _one_line_error(capsys, f"{override.split('=')[0]} must be a finite number")


@pytest.mark.slow
def test_resume_keeps_its_seed(tmp_path, capsys):
    assert _train(tmp_path, "run.seed=3") == 0
    assert _train(tmp_path, "run.seed=4", "--resume") == 2
    _one_line_error(capsys, "was trained with run.seed = 3 but the config asks for 4")


@pytest.mark.slow
def test_a_run_stopped_before_its_first_checkpoint_gets_one_advice(tmp_path, capsys):
    assert _train(tmp_path) == 0
    run = tmp_path / "run"
    shutil.rmtree(run / "checkpoints")  # as a kill during the very first checkpoint leaves it
    assert _train(tmp_path, "--resume") == 2
    _one_line_error(capsys, "no complete checkpoint", "start it over with --overwrite")
    assert _train(tmp_path) == 2
    _one_line_error(capsys, "no complete checkpoint to resume from: start over with --overwrite")
    assert _train(tmp_path, "--overwrite") == 0


def _text_files(tmp_path, train_lines, test_lines):
    train, test = tmp_path / "train.txt", tmp_path / "test.txt"
    train.write_text("\n".join(train_lines) + "\n", encoding="utf-8")
    test.write_text("\n".join(test_lines) + "\n", encoding="utf-8")
    return [f"data.train_file={train}", f"data.test_file={test}"]


@pytest.mark.slow
def test_one_very_long_line_is_named_and_an_impossible_length_refused(tmp_path, capsys):
    words = "the cat sat on the mat and looked at the dog".split()
    lines = [" ".join(words[i % 5: i % 5 + 6]) for i in range(300)]
    lines[123] = " ".join(words * 20000)  # 220,000 words
    files = _text_files(tmp_path, lines, lines[:20])
    code = main(["train", "--config", str(SMOKE_TEXT), f"run.output_dir={tmp_path}", *files, "--dry-run",
                 "discriminator.filter_sizes=2"])
    err = capsys.readouterr().err
    assert "data.train_file line 124 has 220000 tokens, over 4 times the 99th percentile" in err
    assert "set data.seq_len" in err
    assert code == 2 and "error: data.seq_len: one batch at T = 220000" in err
    assert main(["train", "--config", str(SMOKE_TEXT), f"run.output_dir={tmp_path}", *files, "--dry-run",
                 "data.seq_len=8", "discriminator.filter_sizes=2"]) == 0


@pytest.mark.slow
def test_a_stop_signal_is_honoured_during_data_preparation(tmp_path):
    lines = [f"sentence {i} " + " ".join(str(j) for j in range(i % 30)) for i in range(300000)]
    files = _text_files(tmp_path, lines, lines[:100])
    process = subprocess.Popen([sys.executable, "-m", "relgan", "train", "--config", str(SMOKE_TEXT),
                                f"run.output_dir={tmp_path}", *files], cwd=REPO, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    time.sleep(4)  # tokenising 300,000 lines
    assert process.poll() is None, process.stderr.read()
    process.send_signal(signal.SIGTERM)
    start = time.time()
    process.wait(timeout=30)
    assert time.time() - start < 5


# pytest-xdist (--dist loadgroup) keeps this file on one worker, so the module fixture below is made once
pytestmark = pytest.mark.xdist_group(__name__)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A run of QUICK's budget, trained to its end (the tests copy it)."""
    folder = tmp_path_factory.mktemp("finished")
    assert _train(folder) == 0
    return folder / "run"


@pytest.mark.parametrize("overrides, fragments", [
    (["adversarial.algorithm=straight-through"],
     ["was trained with adversarial.algorithm = 'relgan' but the config asks for 'straight-through'"]),
    (["adversarial.loss=standard"], ["adversarial.loss = 'rsgan' but the config asks for 'standard'"]),
    (["data.validation_size=16"], ["data.validation_size = 0 but the config asks for 16"]),
    (["adversarial.steps=2"], ["adversarial.steps = 4 and has done 4; the config asks for 2, fewer than done"]),
    (["adversarial.steps=8"], ["beta's schedule over 4 iterations", "the config asks for 8, which changes beta"]),
    (["mle.epochs=2"], ["mle.epochs = 1 but the config asks for 2; its adversarial phase has begun"]),
    ([], ["has finished (1 MLE epochs, 4 adversarial iterations): nothing to resume"]),
])
def test_resume_refuses_what_would_change_the_run_and_leaves_its_config(finished_run, tmp_path, capsys, overrides,
                                                                        fragments):
    shutil.copytree(finished_run, tmp_path / "run")
    saved = (tmp_path / "run" / "config.yaml").read_bytes()
    capsys.readouterr()
    assert _train(tmp_path, *overrides, "--resume") == 2
    _one_line_error(capsys, *fragments)
    assert (tmp_path / "run" / "config.yaml").read_bytes() == saved


@pytest.mark.parametrize("stopped", [True, False])
def test_a_gan_run_takes_a_larger_mle_cap_only_where_its_mle_phase_stopped_on_its_patience(tmp_path, stopped):
    """MLE that ran out of patience at epoch 140 of at most 200 is the same run under a cap of 400 (a study whose MLE
    grid is extended to smaller learning rates raises the cap); MLE that reached its cap would have gone on."""
    from relgan.assembly import _check_resume
    from relgan.errors import CheckpointError
    from relgan.plugins import load_config

    saved, wanted = (load_config(SMOKE, [f"mle.epochs={cap}"]) for cap in (200, 400))
    progress = {"epoch": 140 if stopped else 200, "mle_step": 0, "batch_in_epoch": 0, "mle_stopped": stopped,
                "adv_step": 4, "adv_stopped": False}
    if stopped:
        _check_resume(saved, wanted, tmp_path, progress)
    else:
        with pytest.raises(CheckpointError, match="its adversarial phase has begun, so its MLE phase is over"):
            _check_resume(saved, wanted, tmp_path, progress)


def test_a_checkpoint_of_other_sizes_is_a_one_line_error(finished_run, tmp_path, capsys):
    """A run directory whose checkpoints another architecture wrote (its config.yaml edited by hand)."""
    shutil.copytree(finished_run, tmp_path / "run")
    shutil.rmtree(tmp_path / "run" / "generator")
    config = tmp_path / "run" / "config.yaml"
    config.write_text(config.read_text().replace("num_filters: 16", "num_filters: 12"))
    capsys.readouterr()
    assert _train(tmp_path, "discriminator.num_filters=12", "--resume") == 2
    _one_line_error(capsys, "does not fit the model the config asks for", "another architecture")


def _last_checkpoint_tensors(run_dir):
    from safetensors.torch import load_file

    last = complete_checkpoints(run_dir)[-1]
    return {f"{path.name}/{key}": value for path in sorted(last.glob("model*.safetensors"))
            for key, value in load_file(str(path)).items()}


@pytest.mark.slow
@pytest.mark.parametrize("name, overrides, networks", [
    ("seqgan", ["adversarial.algorithm=seqgan", "adversarial.loss=standard", "adversarial.rollouts=2",
                "adversarial.g_lr=0.001"], 2),
    ("rebar", ["adversarial.algorithm=rebar", "adversarial.loss=standard"], 3),  # a control variate
    ("learned-beta", ["gumbel.schedule=learned"], 3),
])
def test_a_finished_mle_run_continued_by_any_algorithm_is_the_run_that_trained_its_own_mle_phase(
        tmp_path, name, overrides, networks):
    """Before the adversarial phase its keys have acted on nothing (experiments/reproduce.py branches every GAN of
    a seed from one MLE run). Modules of the adversarial phase alone, which the MLE checkpoint lacks, start from the
    values the seed gives them: every network ends equal to that of a run that trained its MLE phase itself."""
    assert _train(tmp_path, "adversarial.steps=0", name="mle") == 0
    shutil.copytree(tmp_path / "mle", tmp_path / "branch")
    shutil.rmtree(tmp_path / "branch" / "generator")
    assert _train(tmp_path, *overrides, "--resume", name="branch") == 0
    assert _train(tmp_path, *overrides, name="whole") == 0
    branch, whole = _last_checkpoint_tensors(tmp_path / "branch"), _last_checkpoint_tensors(tmp_path / "whole")
    assert len({key.split("/")[0] for key in whole}) == networks
    assert branch.keys() == whole.keys()
    for key, value in whole.items():
        assert torch.equal(branch[key], value), key
    records = [json.loads(line) for line in (tmp_path / "branch" / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["phase"] == "adversarial" and records[-1]["step"] == 4


@pytest.mark.slow
def test_a_gan_branched_from_a_finished_mle_run_trains_at_its_own_learning_rates(tmp_path):
    """The MLE checkpoint's Adam states carry the MLE run's adversarial rates; a branch that sets its own must train
    at them (an older relgan silently kept the checkpoint's)."""
    from relgan.assembly import setup
    from relgan.plugins import load_config

    assert _train(tmp_path, "adversarial.steps=0", name="mle") == 0
    moved = {}
    for name, rate in (("slow", "1e-5"), ("fast", "1e-2")):
        shutil.copytree(tmp_path / "mle", tmp_path / name)
        config = load_config(SMOKE, [*QUICK, f"run.output_dir={tmp_path}", f"run.name={name}", "adversarial.steps=2",
                                     f"adversarial.g_lr={rate}", f"adversarial.d_lr={rate}"])
        trainer = setup(config, resume="latest")
        assert [g["lr"] for g in trainer.g_optimizer.param_groups] == [float(rate)]
        assert [g["lr"] for g in trainer.d_optimizer.param_groups] == [float(rate)]
        start = {key: value.clone() for key, value in trainer.gen.state_dict().items()}
        trainer.fit()
        moved[name] = max((value - start[key]).abs().max().item() for key, value in trainer.gen.state_dict().items())
    assert moved["fast"] > 20 * moved["slow"] > 0, moved


@pytest.mark.slow
def test_resume_continues_with_more_steps_under_the_horizon_it_set_and_new_evaluation_settings(tmp_path):
    assert _train(tmp_path, "gumbel.horizon=8") == 0
    assert _train(tmp_path, "gumbel.horizon=8", "adversarial.steps=6", "adversarial.eval_every=3", "--resume") == 0
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r.get("phase") == "adversarial"] == [2, 4, 6]
    assert "steps: 6" in (tmp_path / "run" / "config.yaml").read_text()
