import math

import pytest
import torch
import torch.nn.functional as F
from conftest import require_cpu_kernels

from relgan.config import DiscriminatorConfig, GeneratorConfig
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
@pytest.mark.parametrize("grad", [True, False])  # without gradients the C++ kernel computes the step
def test_rmc_step_matches_the_official_formulas(slots, grad, kernel_path):
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


@pytest.mark.parametrize("slots, heads, head_size", [(1, 2, 4), (2, 1, 20), (3, 2, 12), (1, 2, 64)])
@pytest.mark.parametrize("unroll", ["sequence", "steps"])
@pytest.mark.parametrize("onednn", [True, False])
def test_rmc_kernel_equals_the_pytorch_steps_with_gradients(slots, heads, head_size, unroll, onednn, monkeypatch):
    """The C++ kernel over a sequence or step by step, its products through oneDNN or ATen's mm: outputs and
    the gradients of inputs, initial memory and every weight. Head sizes cover rows narrower than a vector, a
    partial last vector and whole vectors."""
    require_cpu_kernels()
    from relgan import native
    from relgan.models.layers import unroll_steps

    if onednn and not native.onednn_available():
        pytest.skip("this torch build has no oneDNN")
    monkeypatch.setattr(native, "onednn_available", lambda: onednn)

    torch.manual_seed(5)
    core = Generator(GeneratorConfig(embedding_dim=6, mem_slots=slots, num_heads=heads, head_size=head_size),
                     11, 5, 0).core
    with torch.no_grad():
        for p in core.parameters():  # away from the initial values (unit norms, zero biases)
            p.add_(0.2 * torch.randn_like(p))
    steps, batch, width = 5, 3, heads * head_size
    embedded = torch.randn(steps, batch, 6)
    start = core.initial_state(batch, "cpu") + 0.3 * torch.randn(batch, slots, width)
    upstream = torch.randn(batch, steps, slots * width)

    def run():
        core.zero_grad()
        x, memory = embedded.clone().requires_grad_(), start.clone().requires_grad_()
        inputs = core.project_inputs(x)
        outputs = core.unroll(inputs, memory) if unroll == "sequence" else unroll_steps(core.step, inputs, memory)
        (outputs * upstream).sum().backward()
        grads = {name: p.grad for name, p in core.named_parameters()}
        return outputs.detach(), x.grad, memory.grad, grads

    outputs, grad_x, grad_memory, grads = run()
    with native.pytorch_path():
        expected_outputs, expected_x, expected_memory, expected = run()
    assert outputs.shape == (batch, steps, slots * width)
    torch.testing.assert_close(outputs, expected_outputs, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grad_x, expected_x, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(grad_memory, expected_memory, rtol=1e-4, atol=1e-5)
    for name, grad in grads.items():
        torch.testing.assert_close(grad, expected[name], rtol=1e-4, atol=1e-5, msg=name)
    with torch.no_grad():
        torch.testing.assert_close(core.unroll(core.project_inputs(embedded), start), expected_outputs,
                                   rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("architecture", ["rmc", "lstm"])
@pytest.mark.parametrize("batch", [2, 5])  # 2 * 6 < 13 tokens: projected per step; 5 * 6 > 13: looked up
def test_sampling_is_gumbel_max_over_teacher_forced_logits(architecture, batch, kernel_path):
    torch.manual_seed(2)
    config = GeneratorConfig(architecture=architecture, embedding_dim=8, num_heads=2, head_size=8, hidden_size=12)
    g = Generator(config, vocab_size=13, seq_len=6, start_id=4)
    torch.manual_seed(3)
    tokens, relaxed = g(mode="sample", batch_size=batch, beta=3.0)
    assert tokens.shape == (batch, 6) and relaxed.shape == (batch, 6, 13)
    weights = torch.randn_like(relaxed)
    (relaxed * weights).sum().backward()
    sampled_grads = {name: p.grad.clone() for name, p in g.named_parameters()}
    g.zero_grad()
    torch.manual_seed(3)
    noise = torch.stack([gumbel_noise((batch, 13)) for _ in range(6)], 1)
    logits = g(tokens)
    assert logits.shape == (batch, 6, 13)
    assert torch.equal((logits + noise).argmax(-1), tokens)
    teacher_forced = torch.softmax(3.0 * (logits + noise), -1)
    assert torch.allclose(teacher_forced, relaxed, atol=1e-5)
    (teacher_forced * weights).sum().backward()  # the same function of the weights, given tokens and noise
    for name, p in g.named_parameters():
        assert torch.allclose(sampled_grads[name], p.grad, atol=1e-5), name


def test_fast_sampling_is_reproducible_and_greedy_at_low_temperature(kernel_path):
    torch.manual_seed(2)
    g = Generator(GeneratorConfig(embedding_dim=8, num_heads=2, head_size=8), vocab_size=13, seq_len=6, start_id=4)
    first = g.sample_tokens(50, generator=torch.Generator().manual_seed(9))
    assert torch.equal(first, g.sample_tokens(50, generator=torch.Generator().manual_seed(9)))
    greedy = g.sample_tokens(5, temperature=1e-6)
    assert torch.equal(g(greedy).argmax(-1), greedy)


@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_fast_sampling_draws_the_first_token_from_softmax_of_its_logits(temperature, kernel_path):
    torch.manual_seed(2)
    g = Generator(GeneratorConfig(embedding_dim=8, num_heads=2, head_size=8), vocab_size=13, seq_len=3, start_id=4)
    n = 30000
    first = g.sample_tokens(n, temperature=temperature, generator=torch.Generator().manual_seed(4))[:, 0]
    with torch.no_grad():
        probs = torch.softmax(g(first[:1, None])[0, 0] / temperature, -1)  # step 0 depends on no token
    observed = torch.bincount(first, minlength=13).float()
    chi2 = ((observed - probs * n) ** 2 / (probs * n)).sum().item()
    assert chi2 < 32.9  # chi-square, 12 degrees of freedom, p = 0.001


@pytest.mark.parametrize("hard", [False, True])
@pytest.mark.parametrize("batch", [2, 5])
def test_recorded_sampling_backward_equals_the_step_by_step_graph(hard, batch):
    """Sampling with gradients as a no-grad loop plus one backward over all steps (the RMC kernel's recorder)
    gives the tokens, values and gradients of the graph built step by step."""
    require_cpu_kernels()
    torch.manual_seed(2)
    g = Generator(GeneratorConfig(embedding_dim=8, mem_slots=2, num_heads=2, head_size=8), 13, 6, start_id=4)
    with torch.no_grad():
        for p in g.parameters():
            p.add_(0.2 * torch.randn_like(p))
    weights = torch.randn(batch, 6, 13)

    def run():
        g.zero_grad()
        torch.manual_seed(3)
        tokens, relaxed = g(mode="sample", batch_size=batch, beta=3.0, hard=hard)
        (relaxed * weights).sum().backward()
        return tokens, relaxed.detach(), {name: p.grad.clone() for name, p in g.named_parameters()}

    assert g.core.recorder() is not None
    tokens, relaxed, grads = run()
    g.core.recorder = lambda: None
    expected_tokens, expected_relaxed, expected = run()
    assert torch.equal(tokens, expected_tokens)
    torch.testing.assert_close(relaxed, expected_relaxed, rtol=1e-5, atol=1e-6)
    for name, grad in grads.items():
        assert grad.abs().sum() > 0, name
        torch.testing.assert_close(grad, expected[name], rtol=1e-4, atol=1e-6, msg=name)


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
    for size, w, b in zip(d.filter_sizes, d.conv_weights, d.conv_biases):
        kernel = w.view(-1, width, size).permute(0, 2, 1).unsqueeze(1)  # [filters, 1, size, d]
        out = F.conv2d(emb.permute(0, 2, 1, 3).reshape(batch * s, 1, length, width), kernel, b)
        feats.append(torch.relu(out).amax(dim=(2, 3)))
    h = torch.cat(feats, -1)
    t = torch.sigmoid(h @ d.highway_gate.weight.T)
    h = t * torch.relu(h @ d.highway_transform.weight.T) + (1 - t) * h
    return d.logit(d.hidden(h)).squeeze(-1)


@pytest.mark.parametrize("ids", [False, True])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])  # float32: the highway kernel and oneDNN too
def test_discriminator_equals_the_plain_computation_with_gradients(ids, dtype, kernel_path):
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


def test_gradient_penalty_through_the_discriminator_equals_the_plain_computation(kernel_path):
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


@pytest.mark.parametrize("width", [1, 3])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_conv_max_over_time_equals_plain_autograd(width, dtype, kernel_path):
    from relgan.models.conv_max import conv_max_over_time

    torch.manual_seed(6)
    tolerance = {"rtol": 1e-5, "atol": 1e-5} if dtype == torch.float32 else {}
    for size in (2, 3, 5):
        sequence = torch.randn(70, 9, width, dtype=dtype)
        sequence[:35, 5:] = sequence[:35, 4:5]  # repeated tails: tied windows, like padding in real data
        sequence.requires_grad_(True)
        weight = torch.randn(11, width * size, dtype=dtype, requires_grad=True)
        grad = torch.randn(70, 11, dtype=dtype)
        fast = conv_max_over_time(sequence, weight, size, chunk=16)
        fast.backward(grad)
        fast_grads = sequence.grad.clone(), weight.grad.clone()
        sequence.grad = weight.grad = None
        windows = sequence.unfold(1, size, 1).reshape(70, 9 - size + 1, width * size)
        plain = (windows @ weight.T).max(dim=1).values
        plain.backward(grad)
        assert torch.allclose(fast, plain, **tolerance)
        assert torch.allclose(fast_grads[1], weight.grad, **tolerance)
        # tied windows differ by rounding alone, so either path may pick any of them: the gradient is then
        # fixed only before the tail and summed over it
        assert torch.allclose(fast_grads[0][35:], sequence.grad[35:], **tolerance)
        assert torch.allclose(fast_grads[0][:, :4], sequence.grad[:, :4], **tolerance)
        assert torch.allclose(fast_grads[0][:, 4:].sum(1), sequence.grad[:, 4:].sum(1), **tolerance)
        with torch.no_grad():
            assert torch.allclose(conv_max_over_time(sequence, weight, size), plain, **tolerance)


def test_conv_max_over_time_propagates_nan_like_torch_max(kernel_path):
    from relgan.models.conv_max import conv_max_over_time

    torch.manual_seed(0)
    sequence = torch.randn(4, 6, 1, requires_grad=True)
    weight = torch.tensor([[2.0, -2.0], [1.0, 1.0], [-1.0, 0.5]])
    with torch.no_grad():
        sequence[1, 3] = float("nan")
        sequence[2, 2:4] = float("inf")  # inf - inf = NaN in two filters
    values = conv_max_over_time(sequence, weight, 2)
    windows = sequence.unfold(1, 2, 1).reshape(4, 5, 2)
    plain = (windows @ weight.T).max(dim=1).values
    torch.testing.assert_close(values, plain, equal_nan=True)
    assert values[1].isnan().all() and values[2, [0, 2]].isnan().all() and not values[[0, 3]].isnan().any()
    grad = torch.randn(4, 3)
    (fast_grad,) = torch.autograd.grad(values, sequence, grad)
    (plain_grad,) = torch.autograd.grad(plain, sequence, grad)
    torch.testing.assert_close(fast_grad, plain_grad, equal_nan=True)  # the same (first) NaN windows win


@pytest.mark.parametrize("width", [5, 16, 37])  # narrower than a vector, one vector, a partial last vector
@pytest.mark.parametrize("p", [0.0, 0.25])
def test_highway_kernel_equals_the_gating_formula_with_gradients(width, p):
    """t*relu(h) + (1-t)*f with t = sigmoid(gate), then dropout with the mask of the same random bits, against
    the formula by autograd; the transform's pre-activations include exact zeros (relu's gradient there is 0).
    The second-order gradient (WGAN-GP) too."""
    require_cpu_kernels()
    from relgan.models.highway import highway
    from relgan.models.layers import dropout_bits

    torch.manual_seed(9)
    features = torch.randn(33, width, requires_grad=True)
    both = torch.randn(33, 2 * width)
    both[::3, width::2] = 0.0
    both.requires_grad_(True)
    grad = torch.randn(33, width)
    torch.manual_seed(1)
    value = highway(features, both, p)
    fast = torch.autograd.grad(value, (features, both), grad)
    torch.manual_seed(1)
    keep = (dropout_bits(features.shape, features.device) >= round(p * 2**16) - 2**15).float()
    gate = torch.sigmoid(both[:, :width])
    plain = (gate * torch.relu(both[:, width:]) + (1 - gate) * features) * keep / (1 - p)
    expected = torch.autograd.grad(plain, (features, both), grad, create_graph=True)
    torch.testing.assert_close(value, plain, rtol=1e-5, atol=1e-6)
    for got, want in zip(fast, expected):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    assert abs((1 - keep.mean()).item() - p) < 0.1  # the masks above really drop about a fraction p

    torch.manual_seed(1)
    (first,) = torch.autograd.grad(highway(features, both, p), features, grad, create_graph=True)
    second = torch.autograd.grad(first.square().sum(), both)[0]
    torch.testing.assert_close(second, torch.autograd.grad(expected[0].square().sum(), both)[0], rtol=1e-5, atol=1e-6)


def test_fused_conv_max_weight_gradient_does_not_depend_on_the_thread_count():
    from relgan.models import conv_max

    require_cpu_kernels()
    torch.manual_seed(8)
    sequence = torch.randn(301, 12, 2, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(7, 6, dtype=torch.float64, requires_grad=True)
    grads = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        try:
            conv_max.conv_max_over_time(sequence, weight, 3).sum().backward()
        finally:
            torch.set_num_threads(1)
        grads.append((sequence.grad.clone(), weight.grad.clone()))
        sequence.grad = weight.grad = None
    assert torch.equal(grads[0][0], grads[1][0]) and torch.allclose(grads[0][1], grads[1][1])


def test_dropout_mask_rate_and_scaling():
    from relgan.models.layers import dropout

    torch.manual_seed(7)
    x = torch.ones(200000, requires_grad=True)
    y = dropout(x, 0.25, training=True)
    kept = (y > 0).double().mean().item()
    assert abs(kept - 0.75) < 4 * (0.75 * 0.25 / 200000) ** 0.5
    assert torch.allclose(y[y > 0], torch.full_like(y[y > 0], 1 / 0.75))
    y.sum().backward()
    assert torch.equal(x.grad, y.detach())
    assert dropout(x, 0.25, training=False) is x
    # neighbours share a 64-bit random word: their masks must still be independent
    pairs = ((y[:-1] > 0) & (y[1:] > 0)).double().mean().item()
    assert abs(pairs - 0.75**2) < 4 * (0.75**2 * (1 - 0.75**2) / 200000) ** 0.5
    odd = dropout(torch.ones(501, 397), 0.1, training=True)  # not a multiple of 4 elements
    assert abs((odd > 0).double().mean().item() - 0.9) < 4 * (0.9 * 0.1 / odd.numel()) ** 0.5


def test_one_pass_over_several_batches_equals_separate_passes():
    torch.manual_seed(6)
    d = _discriminator().eval()
    real, fake = torch.randint(0, 9, (3, 7)), torch.softmax(torch.randn(2, 7, 9), -1)
    joint_real, joint_fake = d(real, fake)
    assert torch.allclose(joint_real, d(real)[0], atol=1e-6) and torch.allclose(joint_fake, d(fake)[0], atol=1e-6)


def test_dropout_is_active_in_training_mode():
    torch.manual_seed(7)
    d = _discriminator()
    ids = torch.randint(0, 9, (3, 7))
    assert not torch.equal(d(ids)[0], d(ids)[0])


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


def test_padded_output_projection_equals_linear():
    from relgan.models.layers import padded_linear

    torch.manual_seed(9)
    x, w, b = torch.randn(3, 5, 16), torch.randn(70, 16), torch.randn(70)
    assert torch.allclose(padded_linear(x, w, b), F.linear(x, w, b), atol=1e-6)
    assert padded_linear(x, w, b).shape == (3, 5, 70)


@pytest.mark.parametrize("vocab", [5, 70])  # narrower than a vector; whole vectors and a partial one
def test_padded_cross_entropy_equals_cross_entropy_on_the_slice(vocab, kernel_path):
    from relgan.models.cross_entropy import padded_cross_entropy

    torch.manual_seed(10)
    padded = -(-vocab // 64) * 64 + 64
    logits = (4 * torch.randn(9, padded)).requires_grad_()
    targets = torch.randint(0, vocab, (9,))
    weights = torch.rand(9)
    nll = padded_cross_entropy(logits, targets, vocab)
    (nll * weights).sum().backward()
    reference = logits.detach().clone().requires_grad_()
    expected = F.cross_entropy(reference[:, :vocab], targets, reduction="none")
    (expected * weights).sum().backward()
    torch.testing.assert_close(nll, expected)
    torch.testing.assert_close(logits.grad, reference.grad)
    assert torch.all(logits.grad[:, vocab:] == 0)


def test_padded_cross_entropy_rejects_targets_outside_the_vocabulary(kernel_path):
    from relgan.models.cross_entropy import padded_cross_entropy

    with pytest.raises((RuntimeError, IndexError), match="[Tt]arget"):
        padded_cross_entropy(torch.randn(2, 64), torch.tensor([1, 5]), 5)


@pytest.mark.parametrize("architecture", ["rmc", "lstm"])
def test_token_nll_is_the_cross_entropy_of_the_logits(architecture, kernel_path):
    torch.manual_seed(11)
    config = GeneratorConfig(architecture=architecture, embedding_dim=8, num_heads=2, head_size=8, hidden_size=12)
    g = Generator(config, vocab_size=13, seq_len=6, start_id=4)
    tokens = torch.randint(0, 13, (3, 6))
    logits = g(tokens).flatten(0, 1)
    for temperature in (1.0, 0.7):
        expected = F.cross_entropy(logits / temperature, tokens.flatten(), reduction="none").view(3, 6)
        torch.testing.assert_close(g.token_nll(tokens, temperature), expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(g(tokens, mode="nll"), g.token_nll(tokens))


@pytest.mark.parametrize("rows", [3, 64])
def test_linear_for_steps_equals_linear(rows, kernel_path):
    from relgan.models.layers import linear_for_steps

    torch.manual_seed(12)
    x, w, b = torch.randn(rows, 40), torch.randn(70, 40), torch.randn(70)
    with torch.no_grad():  # packed for oneDNN on the C++ path
        torch.testing.assert_close(linear_for_steps(w, b, rows)(x), F.linear(x, w, b))
    w.requires_grad_()
    out = linear_for_steps(w, b, rows)(x)
    out.sum().backward()
    torch.testing.assert_close(out, F.linear(x, w, b))
    torch.testing.assert_close(w.grad, x.sum(0).expand(70, -1))


@pytest.mark.parametrize("rows", [5, 130])
def test_onednn_linear_equals_linear_with_first_and_second_order_gradients(rows, kernel_path):
    from relgan.models.layers import onednn_linear

    torch.manual_seed(13)
    x = torch.randn(rows, 48, requires_grad=True)
    w = torch.randn(72, 48, requires_grad=True)
    upstream = torch.randn(rows, 72)
    results = []
    for product in (onednn_linear, F.linear):
        out = product(x, w)
        grad_x, grad_w = torch.autograd.grad(out, (x, w), upstream, create_graph=True)
        second = torch.autograd.grad(grad_x.square().sum() + grad_w.sum(), w)[0]
        results.append((out, grad_x, grad_w, second))
    for got, want in zip(*results):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-4)
    out = onednn_linear(x, w)  # first order only: the oneDNN input gradient
    torch.testing.assert_close(torch.autograd.grad(out, x, upstream)[0], upstream @ w, rtol=1e-5, atol=1e-4)


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
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(*grads))
