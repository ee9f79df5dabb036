"""Straight-through Gumbel-Softmax (Jang, Gu & Poole 2017; Bengio et al. 2013): the discriminator sees the one-hot
of the sampled token, and the gradient is the relaxation's, softmax(beta (o + g)), as if the one-hot were it."""

from __future__ import annotations

from relgan.algorithms.relgan import RelGAN


class StraightThrough(RelGAN):
    name = "straight-through"
    summary = "the discriminator sees one_hot(x); the backward pass is the relaxation's"
    hard = True
    legacy_switch = "gumbel.straight_through"
