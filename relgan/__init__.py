"""relgan: RelGAN text GANs on PyTorch and Hugging Face Accelerate."""

__version__ = "0.1.0"
