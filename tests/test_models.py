import math

import pytest
import torch
import torch.nn.functional as F

from relgan.config import DiscriminatorConfig, GeneratorConfig
from relgan.decoding import Decoding
from relgan.gumbel import gumbel_noise
from relgan.models import Discriminator, Generator, count_parameters
from relgan.models.layers import JointLayerNorm


def official_rmc_parameters(v, e=32, slots=1, heads=2, head=256):
    """The official rmc_vanilla generator's variables, counted from the TF code's shapes."""
    f = heads * head
    q = heads * (2 * head + head)
    return (v * e  # g_emb
            + e * f + f  # input projection (bias)
            + f * q + 2 * q  # qkv (no bias) + its layer norm
            + 2 * f  # layer norm after attention
            + 2 * (f * f + f)  # two MLP layers
            + 2 * f  # layer norm after the MLP
            + 2 * (f * 2 * f)  # gates from input and from memory (no bias)
            + slots * f * v + v)  # output unit


def official_discriminator_parameters(v, emb=64, sizes=(2, 3, 4, 5), filters=300, hidden=100):
    width = filters * len(sizes)
    convolutions = sum(s * 1 * 1 * filters + filters for s in sizes)
    return v * emb + convolutions + 2 * width * width + width * hidden + hidden + hidden + 1


@pytest.mark.parametrize("vocab", [4683, 5000, 5256])
def test_parameter_counts_equal_the_official_models(vocab):
    g = Generator(GeneratorConfig(), vocab, 20, 0)
    d = Discriminator(DiscriminatorConfig(), vocab, 20)
    assert count_parameters(g) == official_rmc_parameters(vocab)
    assert count_parameters(d) == official_discriminator_parameters(vocab)


def test_joint_layer_norm_normalises_all_rows_together():
    torch.manual_seed(0)
    x = torch.randn(3, 2, 5) * 4 + 1
    ln = JointLayerNorm(5)
    with torch.no_grad():
        ln.weight.uniform_()
        ln.bias.uniform_()
    flat = x.reshape(3, -1)
    reference = (flat - flat.mean(1, keepdim=True)) / torch.sqrt(flat.var(1, unbiased=False, keepdim=True) + 1e-12)
    expected = reference.reshape(3, 2, 5) * ln.weight + ln.bias
    assert torch.allclose(ln(x), expected, atol=1e-5)
    assert not torch.allclose(ln(x), F.layer_norm(x, (5,)) * ln.weight + ln.bias, atol=1e-3)


def _reference_rmc_step(core, x_emb, memory):
    """The official step written out with explicit per-head loops and hand-rolled statistics (float64)."""
    p = {k: v.double() for k, v in core.state_dict().items()}
    m, x_emb = memory.double(), x_emb.double()

    def layer_norm(t, w, b):
        mu = t.mean(dim=(1, 2), keepdim=True)
        var = ((t - mu) ** 2).mean(dim=(1, 2), keepdim=True)
        return (t - mu) / torch.sqrt(var + 1e-12) * w + b

    x = x_emb @ p["input_projection.weight"].T + p["input_projection.bias"]
    rows = torch.cat([m, x[:, None]], 1)
    qkv = layer_norm(rows @ p["qkv.weight"].T, p["qkv_norm.weight"], p["qkv_norm.bias"])
    heads, h = core.num_heads, core.head_size
    outs = []
    for head in range(heads):
        part = qkv[..., head * 3 * h:(head + 1) * 3 * h]
        q, k, v = part[..., :h], part[..., h:2 * h], part[..., 2 * h:]
        w = torch.softmax(q * (3 * h) ** -0.5 @ k.transpose(1, 2), -1)
        outs.append(w @ v)
    hidden = layer_norm(rows + torch.cat(outs, -1), p["attention_norm.weight"], p["attention_norm.bias"])
    mlp = torch.relu(hidden @ p["mlp.0.weight"].T + p["mlp.0.bias"]) @ p["mlp.2.weight"].T + p["mlp.2.bias"]
    hidden = layer_norm(hidden + mlp, p["mlp_norm.weight"], p["mlp_norm.bias"])[:, :-1]
    gates = x[:, None] @ p["input_gate_projection.weight"].T + torch.tanh(m) @ p["memory_gate_projection.weight"].T
    i, f = gates[..., :core.mem_size], gates[..., core.mem_size:]
    return torch.sigmoid(i) * torch.tanh(hidden) + torch.sigmoid(f + 1) * m


@pytest.mark.parametrize("slots", [1, 3])
@pytest.mark.parametrize("grad", [True, False])
def test_rmc_step_matches_the_official_formulas(slots, grad):
    torch.manual_seed(1)
    g = Generator(GeneratorConfig(embedding_dim=6, mem_slots=slots, num_heads=2, head_size=4), 11, 5, 0)
    core = g.core
    memory = core.initial_state(3, "cpu")
    assert torch.equal(memory[0], torch.eye(slots, 8))
    x_emb = torch.randn(3, 6)
    for _ in range(2):  # from the identity memory, then from a generic one
        with torch.no_grad():
            expected = _reference_rmc_step(core, x_emb, memory)
        with torch.set_grad_enabled(grad):
            output, memory = core.step(core.project_inputs(x_emb), memory)
        assert torch.allclose(memory.double(), expected, atol=1e-5)
        assert torch.equal(output, memory.reshape(3, slots * 8))


@pytest.mark.parametrize("architecture", ["rmc", "lstm"])
@pytest.mark.parametrize("hard", [False, True])
def test_sampling_is_gumbel_max_over_teacher_forced_logits(architecture, hard):
    """Given the noise, sampling is a function of the weights: argmax(o + g) fed back, softmax(beta (o + g))
    out, o the teacher-forced logits of the sampled tokens; its gradients are those of that function."""
    torch.manual_seed(2)
    config = GeneratorConfig(architecture=architecture, embedding_dim=8, num_heads=2, head_size=8, hidden_size=12)
    g = Generator(config, vocab_size=13, seq_len=6, start_id=4)
    noise = gumbel_noise((5, 6, 13), generator=torch.Generator().manual_seed(3))
    tokens, relaxed = g(mode="sample", batch_size=5, beta=3.0, hard=hard, noise=noise)
    assert tokens.shape == (5, 6) and relaxed.shape == (5, 6, 13)
    weights = torch.randn_like(relaxed)
    (relaxed * weights).sum().backward()
    sampled_grads = {name: p.grad.clone() for name, p in g.named_parameters()}
    g.zero_grad()
    logits = g(tokens)
    assert logits.shape == (5, 6, 13)
    assert torch.equal((logits + noise).argmax(-1), tokens)
    teacher_forced = torch.softmax(3.0 * (logits + noise), -1)
    if hard:
        torch.testing.assert_close(relaxed, F.one_hot(tokens, 13).float())
    else:
        torch.testing.assert_close(relaxed, teacher_forced, rtol=1e-5, atol=1e-6)
    (teacher_forced * weights).sum().backward()
    for name, p in g.named_parameters():
        torch.testing.assert_close(sampled_grads[name], p.grad, rtol=1e-5, atol=1e-6, msg=name)


def test_sampling_draws_its_noise_from_the_global_generator():
    torch.manual_seed(2)
    g = Generator(GeneratorConfig(embedding_dim=8, num_heads=2, head_size=8), vocab_size=13, seq_len=6, start_id=4)
    torch.manual_seed(3)
    drawn = g.sample(4, 2.0)
    torch.manual_seed(3)
    noise = torch.stack([gumbel_noise((4, 13)) for _ in range(6)], 1)  # one draw per step, in order
    given = g.sample(4, 2.0, noise=noise)
    assert torch.equal(drawn[0], given[0]) and torch.equal(drawn[1], given[1])


def test_text_sampling_is_reproducible_and_greedy_at_low_temperature():
    torch.manual_seed(2)
    g = Generator(GeneratorConfig(embedding_dim=8, num_heads=2, head_size=8), vocab_size=13, seq_len=6, start_id=4)
    first = g.sample_tokens(50, generator=torch.Generator().manual_seed(9))
    assert torch.equal(first, g.sample_tokens(50, generator=torch.Generator().manual_seed(9)))
    greedy = g.sample_tokens(5, decoding=Decoding(temperature=1e-6))
    assert torch.equal(g(greedy).argmax(-1), greedy)


@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_text_sampling_draws_the_first_token_from_softmax_of_its_logits(temperature):
    torch.manual_seed(2)
    g = Generator(GeneratorConfig(embedding_dim=8, num_heads=2, head_size=8), vocab_size=13, seq_len=3, start_id=4)
    n = 30000
    first = g.sample_tokens(n, decoding=Decoding(temperature), generator=torch.Generator().manual_seed(4))[:, 0]
    with torch.no_grad():
        probs = torch.softmax(g(first[:1, None])[0, 0] / temperature, -1)  # step 0 depends on no token
    observed = torch.bincount(first, minlength=13).float()
    chi2 = ((observed - probs * n) ** 2 / (probs * n)).sum().item()
    assert chi2 < 32.9  # chi-square, 12 degrees of freedom, p = 0.001


def test_relaxed_samples_carry_gradients_to_the_generator():
    g = Generator(GeneratorConfig(embedding_dim=4, num_heads=1, head_size=4), 7, 4, 0)
    _, relaxed = g(mode="sample", batch_size=3, beta=2.0)
    (relaxed * torch.randn_like(relaxed)).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in g.parameters())


def _discriminator(**kw):
    config = DiscriminatorConfig(embedding_dim=8, num_representations=4, filter_sizes=[2, 3], num_filters=5,
                                 hidden_size=6, **kw)
    return Discriminator(config, vocab_size=9, seq_len=7)


def test_discriminator_shapes_and_id_path_equals_one_hot_path():
    torch.manual_seed(4)
    d = _discriminator().eval()
    ids = torch.randint(0, 9, (3, 7))
    (from_ids,) = d(ids)
    (from_one_hot,) = d(F.one_hot(ids, 9).float())
    assert from_ids.shape == (3 * 4,)
    assert torch.allclose(from_ids, from_one_hot, atol=1e-6)


def _plain_discriminator_logits(d, x):
    """The official computation, op by op: conv2d over [B*S, 1, T, d], bias, relu, max over time, highway
    with two separate matmuls, then the output layers (no dropout)."""
    batch, length = x.shape[:2]
    s, width = d.num_representations, d.representation_dim
    emb = (F.embedding(x, d.embedding) if x.dtype == torch.long else x @ d.embedding).view(batch, length, s, width)
    feats = []
    for size, w, b in zip(d.filter_sizes, d.conv_weights, d.conv_biases, strict=True):
        kernel = w.view(-1, width, size).permute(0, 2, 1).unsqueeze(1)  # [filters, 1, size, d]
        out = F.conv2d(emb.permute(0, 2, 1, 3).reshape(batch * s, 1, length, width), kernel, b)
        feats.append(torch.relu(out).amax(dim=(2, 3)))
    h = torch.cat(feats, -1)
    t = torch.sigmoid(h @ d.highway_gate.weight.T)
    h = t * torch.relu(h @ d.highway_transform.weight.T) + (1 - t) * h
    return d.logit(d.hidden(h)).squeeze(-1)


@pytest.mark.parametrize("ids", [False, True])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_discriminator_equals_the_plain_computation_with_gradients(ids, dtype):
    torch.manual_seed(5)
    d = _discriminator(dropout=0.0).to(dtype)
    if ids:  # real data: repeated padding gives tied windows
        x = torch.randint(0, 9, (2, 7))
        x[:, 4:] = 0
    else:
        x = torch.softmax(torch.randn(2, 7, 9, dtype=dtype) * 3, -1)
    weights = torch.randn(8, dtype=dtype)
    (got,) = d(x)
    (got * weights).sum().backward()
    fast = {name: p.grad.clone() for name, p in d.named_parameters()}
    d.zero_grad()
    expected = _plain_discriminator_logits(d, x)
    (expected * weights).sum().backward()
    tolerance = 1e-10 if dtype == torch.float64 else 1e-5
    assert torch.allclose(got, expected, atol=tolerance)
    for name, p in d.named_parameters():
        assert torch.allclose(fast[name], p.grad, atol=tolerance), name


def test_gradient_penalty_through_the_discriminator_equals_the_plain_computation():
    from relgan.losses import gradient_penalty

    torch.manual_seed(9)
    d = _discriminator(dropout=0.0).double()
    real = torch.randint(0, 9, (2, 7))
    fake = torch.softmax(torch.randn(2, 7, 9, dtype=torch.float64) * 3, -1)

    class Plain(torch.nn.Module):
        def forward(self, x):
            return (_plain_discriminator_logits(d, x),)

    grads = []
    for critic in (d, Plain()):
        torch.manual_seed(10)
        d.zero_grad()
        gradient_penalty(critic, real, fake, weight=10.0).backward()  # second order through the conv max
        grads.append({name: torch.zeros_like(p) if p.grad is None else p.grad.clone()
                      for name, p in d.named_parameters()})
    for name in grads[0]:
        assert torch.allclose(grads[0][name], grads[1][name], atol=1e-10), name
    assert grads[0]["conv_weights.0"].abs().sum() > 0


def test_dropout_mask_rate_and_scaling():
    d = _discriminator(dropout=0.25)
    torch.manual_seed(7)
    mask = d.dropout_mask((400, 500), "cpu")
    kept = (mask > 0).double().mean().item()
    assert abs(kept - 0.75) < 4 * (0.75 * 0.25 / mask.numel()) ** 0.5
    assert torch.equal(mask[mask > 0], torch.full_like(mask[mask > 0], 1 / 0.75))
    pairs = ((mask[:, :-1] > 0) & (mask[:, 1:] > 0)).double().mean().item()  # neighbours independent
    assert abs(pairs - 0.75**2) < 4 * (0.75**2 * (1 - 0.75**2) / mask[:, 1:].numel()) ** 0.5


def test_one_pass_over_several_batches_equals_separate_passes():
    torch.manual_seed(6)
    d = _discriminator().eval()
    real, fake = torch.randint(0, 9, (3, 7)), torch.softmax(torch.randn(2, 7, 9), -1)
    joint_real, joint_fake = d(real, fake)
    assert torch.allclose(joint_real, d(real)[0], atol=1e-6) and torch.allclose(joint_fake, d(fake)[0], atol=1e-6)


def test_dropout_multiplies_the_highway_output_in_training_mode_only():
    """In training mode the logits are the evaluation-mode computation with the highway's output multiplied by
    the mask, by hand: logit(hidden(h * mask))."""
    torch.manual_seed(7)
    d = _discriminator(dropout=0.25)
    ids = torch.randint(0, 9, (3, 7))
    embedded = d.embed(ids)
    mask = d.dropout_mask((3 * 4, 10), "cpu")
    captured = []
    hook = d.hidden.register_forward_pre_hook(lambda module, inputs: captured.append(inputs[0]))
    d.eval()(ids)
    hook.remove()
    h = captured[0]
    expected = d.logit(d.hidden(h * mask)).squeeze(-1)
    torch.testing.assert_close(d.train().classify(embedded, mask), expected)
    torch.testing.assert_close(d.eval().classify(embedded, mask), d.logit(d.hidden(h)).squeeze(-1))


def test_filters_longer_than_sentences_are_a_config_error():
    from relgan.errors import ConfigError

    with pytest.raises(ConfigError, match="largest filter"):
        Discriminator(DiscriminatorConfig(), vocab_size=9, seq_len=4)


def test_a_few_mle_steps_lower_the_loss():
    torch.manual_seed(8)
    data = torch.randint(0, 20, (16, 6))
    data[:, 1::2] = (data[:, ::2] + 1) % 20  # learnable structure
    g = Generator(GeneratorConfig(embedding_dim=8, num_heads=2, head_size=8), 20, 6, 0)
    optimizer = torch.optim.Adam(g.parameters(), lr=1e-2)
    losses = []
    for _ in range(60):
        loss = F.cross_entropy(g(data).flatten(0, 1), data.flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    # half the positions are uniform noise (entropy log 20 ~ 3.0), the other half deterministic
    assert losses[-1] < 0.7 * losses[0]
    assert losses[0] == pytest.approx(math.log(20), rel=0.15)


@pytest.mark.parametrize("architecture", ["rmc", "lstm"])
def test_token_nll_is_the_cross_entropy_of_the_logits(architecture):
    torch.manual_seed(11)
    config = GeneratorConfig(architecture=architecture, embedding_dim=8, num_heads=2, head_size=8, hidden_size=12)
    g = Generator(config, vocab_size=13, seq_len=6, start_id=4)
    tokens = torch.randint(0, 13, (3, 6))
    logits = g(tokens).flatten(0, 1)
    for temperature in (1.0, 0.7):
        expected = F.cross_entropy(logits / temperature, tokens.flatten(), reduction="none").view(3, 6)
        torch.testing.assert_close(g.token_nll(tokens, temperature), expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(g(tokens, mode="nll"), g.token_nll(tokens))


def test_frozen_discriminator_gives_the_same_generator_gradients():
    from relgan.runtime import frozen

    torch.manual_seed(10)
    g = Generator(GeneratorConfig(embedding_dim=4, num_heads=1, head_size=8), 9, 7, 0)
    d = _discriminator(dropout=0.0)
    grads = []
    for freeze in (False, True):
        g.zero_grad(set_to_none=True)
        d.zero_grad(set_to_none=True)
        torch.manual_seed(11)
        _, fake = g(mode="sample", batch_size=3, beta=2.0)
        if freeze:
            with frozen(d):
                d(fake)[0].sum().backward()
            assert all(p.grad is None for p in d.parameters()) and all(p.requires_grad for p in d.parameters())
        else:
            d(fake)[0].sum().backward()
        grads.append([p.grad.clone() for p in g.parameters()])
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(*grads, strict=True))
