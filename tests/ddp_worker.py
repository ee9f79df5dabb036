"""Run by test_distributed.py under `accelerate launch`: train the smoke config and report, per rank, a hash
of every parameter and of the data the rank trained on, as run_dir/result-rank<r>.json (a file per rank: two
ranks printing to one pipe can interleave their lines).

    ddp_worker.py CONFIG OVERRIDES... [--then OVERRIDES...]...

Each ``--then`` is one run, with the shared overrides followed by its own, all in the same two processes (one
launch, whose start-up is most of a smoke run's time); without ``--then``, one run. A run's ``config=PATH`` word
trains PATH instead of CONFIG; its ``via=cli`` word trains through ``relgan train`` (as train.py does: replicas of
run.seeds, the seed summary) and reports nothing, and it must be the last run (it ends the process group)."""

import hashlib
import json
import sys

from relgan.assembly import setup
from relgan.cli import main as main_of_cli
from relgan.plugins import load_config


def digest(tensors) -> str:
    h = hashlib.sha256()
    for tensor in tensors:
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def main() -> None:
    config, *words = sys.argv[1:]
    common, *runs = " ".join(words).split(" --then ")
    variants = [[*common.split(), *run.split()] for run in runs] or [common.split()]
    for index, words in enumerate(variants):
        paths = [word.removeprefix("config=") for word in words if word.startswith("config=")]
        overrides = [word for word in words if not word.startswith(("config=", "via="))]
        last = index == len(variants) - 1
        if "via=cli" in words:
            assert last, "a via=cli run ends the process group: it must be the last"
            assert main_of_cli(["train", "--config", paths[-1] if paths else config, *overrides]) == 0
        else:
            train_and_report(paths[-1] if paths else config, overrides, last=last)


def train_and_report(config: str, overrides: list[str], last: bool) -> None:
    trainer = setup(load_config(config, overrides))
    seen = {"mle": [], "adversarial": []}
    mle_step, real_batch = trainer.mle_step.step, trainer.draws.real_batch

    def recording_mle_step(batch):
        seen["mle"].append(batch.clone())
        return mle_step(batch)

    def recording_real_batch(size):
        batch, labels = real_batch(size)
        seen["adversarial"].append(batch.clone())
        return batch, labels

    trainer.mle_step.step, trainer.draws.real_batch = recording_mle_step, recording_real_batch
    trainer.fit(keep_process_group=not last)
    result = {
        "rank": trainer.acc.process_index,
        "num_processes": trainer.acc.num_processes,
        "distributed_type": str(trainer.acc.distributed_type),
        "generator": digest(trainer.gen.state_dict().values()),
        "discriminator": digest(trainer.disc.state_dict().values()),
        "learned": None if trainer.algorithm.learned is None
        else digest(trainer.acc.unwrap_model(trainer.algorithm.learned).state_dict().values()),
        "mle_data": digest(seen["mle"]),
        "adversarial_data": digest(seen["adversarial"]),
        "batches": {k: len(v) for k, v in seen.items()},
    }
    (trainer.run_dir / f"result-rank{trainer.acc.process_index}.json").write_text(json.dumps(result))


if __name__ == "__main__":
    main()
