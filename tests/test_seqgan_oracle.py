"""SeqGAN's fixed oracle (relgan/seqgan_oracle.py, data.oracle.params): the loaded oracle equals SeqGAN's
equations written in NumPy, its files are verified by hash, and a bad file, folder or size is one line."""

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from relgan.cli import main
from relgan.config import OracleConfig
from relgan.oracle import OracleLSTM
from relgan.seqgan_oracle import FILES

from conftest import REPO, SMOKE

SEQGAN = ["data.oracle.vocab_size=5000", "data.oracle.seq_len=20", "data.oracle.embedding_dim=32",
          "data.oracle.hidden_size=32", "data.oracle.start_token=0"]


@pytest.fixture(scope="module")
def oracle_folder():
    path = REPO.parent / "shared" / "data" / "seqgan_oracle"
    path = type(path)(os.environ["RELGAN_SHARED_DATA"]) / "seqgan_oracle" if "RELGAN_SHARED_DATA" in os.environ \
        else path
    if not (path / "wo.npz").is_file():
        pytest.skip(f"SeqGAN's oracle not found at {path} (set RELGAN_SHARED_DATA)")
    return path


def _seqgan_log_probs(folder, tokens):
    """log p(token_t | tokens_<t) [N, T] by SeqGAN's target_lstm.py equations in NumPy (float64)."""
    w = {name.removesuffix(".npz"): np.load(folder / name, allow_pickle=False).astype(np.float64) for name in FILES}

    def sigmoid(x):
        return 1 / (1 + np.exp(-x))

    rows, length = tokens.shape
    h, c = np.zeros((rows, 32)), np.zeros((rows, 32))
    previous = np.zeros(rows, dtype=np.int64)  # start token 0
    out = np.zeros((rows, length))
    for t in range(length):
        x = w["embedding"][previous]
        i = sigmoid(x @ w["wi"] + h @ w["ui"] + w["bi"])
        f = sigmoid(x @ w["wf"] + h @ w["uf"] + w["bf"])
        o = sigmoid(x @ w["wog"] + h @ w["uog"] + w["bog"])
        c_tilde = np.tanh(x @ w["wc"] + h @ w["uc"] + w["bc"])
        c = f * c + i * c_tilde
        h = o * np.tanh(c)
        logits = h @ w["wo"] + w["bo"]
        top = logits.max(axis=1, keepdims=True)
        log_z = top[:, 0] + np.log(np.exp(logits - top).sum(axis=1))
        out[:, t] = logits[np.arange(rows), tokens[:, t]] - log_z
        previous = tokens[:, t]
    return out


def test_the_loaded_oracle_is_seqgans_equations(oracle_folder):
    oracle = OracleLSTM(OracleConfig(params=str(oracle_folder)))
    tokens = oracle.sample(8, torch.Generator().manual_seed(0))
    expected = -_seqgan_log_probs(oracle_folder, tokens.numpy()).mean()
    assert oracle.nll(tokens) == pytest.approx(expected, rel=1e-12)
    # and it is not the N(0, 1) oracle of the same sizes
    assert OracleLSTM(OracleConfig()).nll(tokens) != pytest.approx(expected, rel=1e-3)


@pytest.mark.slow  # two processes
def test_prepare_copies_the_verified_arrays_and_refuses_an_altered_one(oracle_folder, tmp_path):
    script = REPO / "data" / "seqgan_oracle" / "prepare.py"
    done = subprocess.run([sys.executable, str(script), "--source", str(oracle_folder), "--out", str(tmp_path / "a")],
                          capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == sorted(FILES)
    shutil.copytree(tmp_path / "a", tmp_path / "altered")
    weights = np.load(tmp_path / "altered" / "wf.npz", allow_pickle=False)
    weights[0, 0] += 1e-3
    with (tmp_path / "altered" / "wf.npz").open("wb") as handle:
        np.save(handle, weights)
    refused = subprocess.run([sys.executable, str(script), "--source", str(tmp_path / "altered"), "--out",
                              str(tmp_path / "b")], capture_output=True, text=True, cwd=REPO)
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1
    assert "wf.npz: checksum mismatch" in refused.stderr and not (tmp_path / "b").exists()


@pytest.mark.parametrize("problem", ["missing", "sizes"])
def test_a_missing_file_or_other_sizes_are_one_line(oracle_folder, tmp_path, capsys, problem):
    folder = tmp_path / "oracle"
    shutil.copytree(oracle_folder, folder)
    sizes = SEQGAN
    if problem == "missing":
        (folder / "bo.npz").unlink()
    else:
        sizes = [*SEQGAN[:1], "data.oracle.seq_len=12", *SEQGAN[2:]]
    code = main(["train", "--config", str(SMOKE), f"run.output_dir={tmp_path}", f"data.oracle.params={folder}",
                 *sizes, "mle.epochs=1", "adversarial.steps=0"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and "Traceback" not in err, err
    assert ("bo.npz: missing" in err) if problem == "missing" else \
        ("data.oracle.seq_len = 12, but SeqGAN's oracle (data.oracle.params) has 20" in err)
