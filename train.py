"""Train a RelGAN model: ``python train.py --config configs/demo.yaml [key=value ...]``.

Same as ``relgan train``; launch on several GPUs or nodes with ``accelerate launch train.py ...``.
"""

from relgan.cli import train_entry

if __name__ == "__main__":
    train_entry()
