import pytest

from relgan.errors import DataError
from relgan.prepare import BenchmarkFile, git_blob_hash, prepare


def test_git_blob_hash_matches_git():
    assert git_blob_hash(b"hello\n") == "ce013625030ba8dba906f756967f9e9ca394464a"  # git hash-object


def test_prepare_copies_and_verifies_the_benchmark(shared_data, tmp_path):
    import importlib.util

    from conftest import REPO

    spec = importlib.util.spec_from_file_location("coco", REPO / "data" / "image_coco" / "prepare.py")
    coco = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(coco)
    lines = prepare(coco.FILES, str(shared_data / "image_coco"), tmp_path)
    assert len(lines) == 2 and "10000 lines" in lines[0]
    assert (tmp_path / "train.txt").read_bytes() == (shared_data / "image_coco" / "train.txt").read_bytes()


def test_prepare_refuses_other_files(tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    (source / "train.txt").write_text("not the benchmark\n")
    with pytest.raises(DataError, match="checksum mismatch"):
        prepare([BenchmarkFile("train", "data/x.txt", "f858bc92")], str(source), tmp_path / "out")
    with pytest.raises(DataError, match="neither"):
        prepare([BenchmarkFile("test", "data/y.txt", "0")], str(source), tmp_path / "out")
