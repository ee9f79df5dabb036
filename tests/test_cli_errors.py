"""Bad input ends with exit code != 0 and exactly one line on stderr, never a traceback."""

import shutil

import pytest

from relgan.checkpoint import complete_checkpoints
from relgan.cli import main

from conftest import REPO, SMOKE, SMOKE_TEXT, run_clis

SMALL_TEXT = ["mle.batch_size=2", "adversarial.batch_size=2", "adversarial.steps=2",
              "mle.epochs=1", "discriminator.filter_sizes=2", "eval.num_samples=4", "eval.metrics=[bleu]"]


def _one_line_error(capsys, argv, expected):
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0
    assert len(err) == 1 and "Traceback" not in err[0], err
    assert err[0].startswith("error: ") and expected in err[0], err[0]


def _text_files(tmp_path, train=b"a b c\nb c d\nc d e\n", test=b"a b c\n"):
    (tmp_path / "train.txt").write_bytes(train)
    (tmp_path / "test.txt").write_bytes(test)
    return [f"data.train_file={tmp_path / 'train.txt'}", f"data.test_file={tmp_path / 'test.txt'}"]


@pytest.mark.parametrize("train, expected", [
    (None, "data.train_file: file not found"),
    (b"", "data.train_file: file is empty"),
    (b"\xff\xfeh\x00i\x00\n", "is UTF-16 text, not UTF-8"),
    (b"caf\xe9\n", "is not UTF-8 text (invalid byte at line 1)"),
    (b"\x7fELF\x02\x01\x01\x00\x00\x00", "looks binary"),
    (b"a b c\n", "1 training sentences, fewer than one batch (2)"),
])
def test_bad_training_data(tmp_path, capsys, train, expected):
    files = _text_files(tmp_path, train=b"x" if train is None else train)
    if train is None:
        (tmp_path / "train.txt").unlink()
    _one_line_error(capsys, ["train", "--config", str(SMOKE_TEXT), f"run.output_dir={tmp_path}", *SMALL_TEXT, *files,
                             "--dry-run"], expected)


def test_blank_lines_and_long_test_sentences_are_counted_not_fatal(tmp_path, capsys):
    files = _text_files(tmp_path, train=b"a b c\n\n  \nb c d\nc d e\n", test=b"a b c d e f\n")
    assert main(["train", "--config", str(SMOKE_TEXT), f"run.output_dir={tmp_path}", *SMALL_TEXT, *files,
                 "--dry-run"]) == 0
    err = capsys.readouterr().err
    assert "warning: data.train_file: skipped 2 blank lines" in err
    assert "warning: all 1 test sentences are longer than seq_len = 3 and were truncated" in err


def test_unreachable_hub_dataset(tmp_path, capsys):
    _one_line_error(capsys, ["train", "--config", str(SMOKE_TEXT), "data.source=hub", "data.dataset=nobody/missing-xyz",
                             "--dry-run"], "data.source=files data.train_file=PATH")


@pytest.mark.parametrize("override, expected", [
    ("adversarial.stepz=3", "unknown key 'adversarial.stepz'"),
    ("mle.epochs=two", "mle.epochs must be an integer"),
    ("mle.lr=-1", "mle.lr = -1.0 is out of range"),
    ("gumbel.beta_max=0", "gumbel.beta_max = 0.0 is out of range"),
    ("gumbel.schedule=cos", "choose one of: no, lin, exp"),
    ("adversarial.loss=wasserstein", "choose one of: rsgan, standard"),
    ("generator.architecture=gru", "choose one of: rmc, lstm, transformer"),
    ("mle.epochs=0 adversarial.steps=0", "nothing to train"),
    ("discriminator.filter_sizes=[2,x]", "discriminator.filter_sizes must be a list of integers, got [2, 'x']"),
    ("data.train_file=mine.txt", "data.train_file = 'mine.txt' has no effect with data.source = 'oracle'"),
])
def test_bad_config_values(tmp_path, capsys, override, expected):
    _one_line_error(capsys, ["train", "--config", str(SMOKE), *override.split(), "--dry-run"], expected)


def test_missing_config_file(capsys, tmp_path):
    _one_line_error(capsys, ["train", "--config", str(tmp_path / "nope.yaml")], "config file not found")


def _copy(smoke_run, tmp_path):
    shutil.copytree(smoke_run, tmp_path / "done")
    return tmp_path / "done"


def test_resume_without_a_run_directory(tmp_path, capsys):
    _one_line_error(capsys, ["train", "--config", str(SMOKE), f"run.output_dir={tmp_path}", "--resume"],
                    "run directory not found")


@pytest.mark.slow
def test_existing_run_directory_needs_resume_or_overwrite(smoke_run, tmp_path, capsys):
    _copy(smoke_run, tmp_path)
    _one_line_error(capsys, ["train", "--config", str(SMOKE), f"run.output_dir={tmp_path}", "run.name=done"],
                    "already exists; continue it with --resume")


def test_incomplete_and_truncated_checkpoints(smoke_run, tmp_path, capsys):
    run = _copy(smoke_run, tmp_path)
    base = ["train", "--config", str(SMOKE), f"run.output_dir={tmp_path}", "run.name=done"]
    first, second, last = complete_checkpoints(run)
    (first / "manifest.json").unlink()
    _one_line_error(capsys, [*base, "--resume-from", str(first)], "incomplete checkpoint (no manifest.json)")
    weights = second / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    _one_line_error(capsys, [*base, "--resume-from", str(second)], "truncated checkpoint (model.safetensors has 100")
    _one_line_error(capsys, [*base, "--resume-from", str(tmp_path / "nowhere")], "checkpoint not found")
    # --resume skips what is incomplete and picks the last complete one
    assert complete_checkpoints(run) == [last]


def test_resume_with_another_architecture_or_vocabulary(smoke_run, tmp_path, capsys):
    _copy(smoke_run, tmp_path)
    base = ["train", "--config", str(SMOKE), f"run.output_dir={tmp_path}", "run.name=done", "--resume"]
    _one_line_error(capsys, [*base, "generator.head_size=8"],
                    "was trained with generator.head_size = 16 but the config asks for 8")
    _one_line_error(capsys, [*base, "data.oracle.vocab_size=60"],
                    "was trained with data.oracle.vocab_size = 50 but the config asks for 60")


def test_weights_of_another_architecture_are_refused(smoke_run, tmp_path, capsys):
    run = _copy(smoke_run, tmp_path)
    card = (run / "model.json").read_text().replace('"head_size": 16', '"head_size": 8')
    (run / "model.json").write_text(card)
    _one_line_error(capsys, ["sample", "--run", str(run), "--num", "2"], "weights do not fit the generator")


def test_sample_errors(smoke_run, tmp_path, capsys):
    _one_line_error(capsys, ["sample", "--run", str(tmp_path / "none"), "--num", "2"], "not a relgan run")
    run = _copy(smoke_run, tmp_path)
    shutil.rmtree(run / "generator")
    latest = complete_checkpoints(run)[-1]
    _one_line_error(capsys, ["sample", "--run", str(run), "--num", "2"],
                    f"no final generator export yet (the run has not finished); pass --checkpoint {latest}")


def test_test_sentences_all_longer_than_seq_len_are_named(tmp_path, capsys):
    files = _text_files(tmp_path, train=b"a b\nb c\nc d\n", test=b"a b c d\nb c d e\n")
    assert main(["train", "--config", str(SMOKE_TEXT), f"run.output_dir={tmp_path}", *SMALL_TEXT, *files,
                 "--dry-run"]) == 0
    err = capsys.readouterr().err
    assert "all 2 test sentences are longer than seq_len = 2 and were truncated" in err and "raise data.seq_len" in err


@pytest.mark.parametrize("samples, references, expected", [
    (b"", b"a b\n", "--samples: file is empty"),
    (b"\n  \n\n", b"a b\n", "--samples: file is empty"),
    (b"a b\n", None, "--references: file not found"),
    ("caf\u00e9 noir\n".encode("latin-1"), b"a b\n", "--samples: "),
])
def test_evaluate_file_errors(tmp_path, capsys, samples, references, expected):
    (tmp_path / "s.txt").write_bytes(samples)
    if references is not None:
        (tmp_path / "r.txt").write_bytes(references)
    _one_line_error(capsys, ["evaluate", "--samples", str(tmp_path / "s.txt"), "--references",
                             str(tmp_path / "r.txt"), "--out", str(tmp_path / "o.json")], expected)


@pytest.mark.slow
def test_real_process_exit_code_and_single_line(tmp_path):
    (tmp_path / "t.txt").write_bytes("na\u00efve\n".encode("utf-16"))
    result, debug = run_clis([
        ["train", "--config", str(SMOKE_TEXT), f"data.train_file={tmp_path / 't.txt'}",
         f"data.test_file={tmp_path / 't.txt'}", "--dry-run"],
        ["train", "--config", str(tmp_path / "missing.yaml"), "--debug"],
    ], cwd=REPO)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "Traceback" not in result.stderr
    assert "data.train_file:" in result.stderr
    assert debug.returncode != 0 and "Traceback" in debug.stderr


@pytest.mark.parametrize("config, overrides, fragment", [
    ("text", ["data.seq_len=100000000"], "data.seq_len: one batch at T = 100000000"),
    ("oracle", ["data.oracle.seq_len=100000000"], "data.oracle.seq_len: one batch at T = 100000000"),
    ("oracle", ["adversarial.algorithm=gumbel-rao", "adversarial.rao_samples=2000000"],
     "adversarial.rao_samples: the algorithm's generator step needs about"),
    ("oracle", ["adversarial.algorithm=seqgan", "adversarial.loss=standard", "adversarial.rollouts=10000000"],
     "adversarial.rollouts: the algorithm's generator step needs about"),
])
def test_impossible_sizes_are_refused_before_anything_is_allocated(tmp_path, capsys, config, overrides, fragment):
    files = _text_files(tmp_path) if config == "text" else []
    path = SMOKE_TEXT if config == "text" else SMOKE
    assert main(["train", "--config", str(path), f"run.output_dir={tmp_path}", "--dry-run", *files, *overrides]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if not line.startswith(("warning:", "info:"))]  # the smoke config's gumbel keys
    assert len(errors) == 1 and fragment in errors[0] and "Traceback" not in "\n".join(err), err
