"""A worker of bench/seqgan_step.py: TextGAN-PyTorch's SeqGAN generator step at SeqGAN's sizes, run inside a
checkout of TextGAN-PyTorch (its directory is the working directory and on PYTHONPATH). Reads a workload per line
from stdin (``step``: sample 64 sentences, rewards from 16 rollouts per prefix, policy-gradient update; ``reward``:
the rewards alone) and prints its seconds."""

from __future__ import annotations

import sys
import time

import torch


def main() -> None:
    torch.set_num_threads(int(sys.argv[1]))
    torch.manual_seed(0)
    import config as cfg  # TextGAN-PyTorch's module-level settings: V = 5000, T = 20, batch 64, 16 rollouts
    from models.SeqGAN_D import SeqGAN_D
    from models.SeqGAN_G import SeqGAN_G
    from utils import rollout
    from utils.data_loader import GenDataIter

    gen = SeqGAN_G(cfg.gen_embed_dim, cfg.gen_hidden_dim, cfg.vocab_size, cfg.max_seq_len, cfg.padding_idx,
                   gpu=False)
    dis = SeqGAN_D(cfg.dis_embed_dim, cfg.vocab_size, cfg.padding_idx, gpu=False)
    optimizer = torch.optim.Adam(gen.parameters(), lr=cfg.gen_lr)
    target = gen.sample(cfg.batch_size, cfg.batch_size)

    def step() -> None:  # SeqGANInstructor.adv_train_generator with g_step = 1, its optimize() inlined
        rollout_func = rollout.ROLLOUT(gen, False)
        inp, target = GenDataIter.prepare(gen.sample(cfg.batch_size, cfg.batch_size), gpu=False)
        rewards = rollout_func.get_reward(target, cfg.rollout_num, dis)
        loss = gen.batchPGLoss(inp, target, rewards)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(gen.parameters(), cfg.clip_norm)
        optimizer.step()

    workloads = {"step": step, "reward": lambda: rollout.ROLLOUT(gen, False).get_reward(target, cfg.rollout_num, dis)}
    print(f"ready {cfg.vocab_size} {cfg.max_seq_len} {cfg.batch_size} {cfg.rollout_num}", flush=True)
    for line in sys.stdin:
        start = time.perf_counter()
        workloads[line.strip()]()
        print(f"{time.perf_counter() - start:.6f}", flush=True)


if __name__ == "__main__":
    main()
