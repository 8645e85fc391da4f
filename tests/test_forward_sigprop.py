"""Sigprop: per-layer locality, the input-target losses, and learning on digits."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from conftest import DigitsStreamStub as _Stream

from replaybench.agents.forward import losses
from replaybench.agents.forward.sigprop import SigpropAgent, SigpropConfig
from replaybench.errors import ConfigError
from replaybench.protocols import Experience


def _accuracy(agent, experience: Experience) -> float:
    return (agent.predict(experience.test_x).argmax(1) == experience.test_y).float().mean().item()


@pytest.mark.parametrize(
    "architecture, hidden, loss",
    [
        ("mlp", (64, 64), "max-rand"),
        ("mlp", (64, 64), "top-k"),
        ("cnn", (8, 16), "max-rand"),  # with the per-sample norm, as the reference runs its CNNs
    ],
)
def test_sigprop_learns_digits_well_above_chance(digits_experience, architecture, hidden, loss):
    norm = "layer" if architecture == "cnn" else "none"
    config = SigpropConfig(
        architecture=architecture, hidden=hidden, loss=loss, norm=norm, epochs=6, batch_size=64, lr=2e-3
    )
    agent = SigpropAgent(stream=_Stream(), config=config, seed=0)
    untrained = _accuracy(agent, digits_experience)
    agent.learn(digits_experience)
    assert _accuracy(agent, digits_experience) > 0.8 > untrained + 0.3  # chance is 0.1


def test_each_layer_loss_reaches_only_its_own_layer(digits_experience):
    agent = SigpropAgent(stream=_Stream(), config=SigpropConfig(hidden=(32, 32, 32)), seed=0)
    net = agent.network
    owners = [list(b.parameters()) for b in net.blocks] + [list(net.head.parameters())]
    owners[0] += list(agent.signal.parameters())  # S learns with layer 1's loss
    everything = [p for group in owners for p in group]
    layer_losses = list(agent.local_losses(digits_experience.train_x[:64], digits_experience.train_y[:64]))
    assert len(layer_losses) == len(owners) == 4
    for i, loss in enumerate(layer_losses):
        grads = torch.autograd.grad(loss, everything, allow_unused=True, retain_graph=True)
        touched = {id(p) for p, g in zip(everything, grads) if g is not None and g.abs().sum() > 0}
        assert touched == {id(p) for p in owners[i]}, f"loss {i} touched other layers"


def test_target_travels_forward_through_the_same_weights(digits_experience):
    agent = SigpropAgent(stream=_Stream(), config=SigpropConfig(hidden=(32, 24)), seed=0)
    t1 = agent.signal(agent.class_codes)
    t2 = agent.network.blocks[1](t1)
    # Perturbing layer 2's weights changes its target; the target never sees x.
    with torch.no_grad():
        agent.network.blocks[1].weights.weight.add_(0.1)
    assert not torch.allclose(agent.network.blocks[1](t1), t2)
    assert t1.shape == (10, 32) and t2.shape == (10, 24)


def _reference_losses(h, t_classes, t_prev_classes, labels, k):
    """The three losses written per sample over B×B matrices, as the reference code does."""
    t, tp = t_classes[labels], t_prev_classes[labels]
    if h.dim() > 2:  # [B, C, H, W]: mean over positions of the per-position products
        y = torch.einsum("acp,bcp->ab", h.flatten(2), t.flatten(2)) / h[0, 0].numel()
        yy = torch.einsum("acp,bcp->ab", tp.flatten(2), tp.flatten(2)) / tp[0, 0].numel()
    else:
        y, yy = h @ t.t(), tp @ tp.t()
    log_p = F.log_softmax(y, dim=1)
    top = torch.zeros_like(yy).scatter_(1, yy.topk(k, dim=1).indices, 1.0)
    tied = (yy == yy.max(1, keepdim=True).values).float()
    return {
        "max-rand": F.cross_entropy(y, yy.argmax(1)),
        "top-k": -(top * log_p).sum(1).mean(),
        "max-all": -(tied * log_p).sum(1).mean(),
    }


@pytest.mark.parametrize("shape", [(16,), (3, 4, 4)])
@pytest.mark.parametrize("k", [1, 3, 6])
def test_class_level_losses_equal_the_per_sample_batch_formulas(shape, k):
    g = torch.Generator().manual_seed(k)
    labels = torch.tensor([0, 2, 2, 3, 0, 2, 5, 3, 3, 2, 0, 5])  # classes 1 and 4 absent
    h = torch.rand(12, *shape, generator=g, requires_grad=True)
    t_classes = torch.rand(6, *shape, generator=g, requires_grad=True)
    t_prev = torch.rand(6, *shape, generator=g)
    expected = _reference_losses(h, t_classes, t_prev, labels, k)
    y, gram = losses.class_similarity(h, t_classes), losses.target_gram(t_prev)
    counts = torch.bincount(labels, minlength=6)
    for name, fn in losses.INPUT_TARGET_LOSSES.items():
        ours = fn(y, gram, labels, counts, k)
        torch.testing.assert_close(ours, expected[name], msg=name)
        # The closed-form gradient (losses.loss_and_grad) against autograd through the B×B formulas.
        wanted = torch.autograd.grad(expected[name], [h, t_classes], retain_graph=True)
        got = torch.autograd.grad(ours, [h, t_classes], retain_graph=True)
        for a, b in zip(got, wanted):
            torch.testing.assert_close(a, b, msg=name)


def test_first_layer_losses_match_with_one_hot_targets():
    """At layer 1, t_0 = c: each input's matching targets are those of its own class.

    (k stays within each class's count: beyond it the B×B form picks among
    other classes' tied zeros by batch position, which is arbitrary.)
    """
    g = torch.Generator().manual_seed(0)
    labels = torch.tensor([1, 0, 1, 2, 2, 0])
    h, t_classes = torch.rand(6, 8, generator=g), torch.rand(3, 8, generator=g)
    codes = torch.eye(3)
    expected = _reference_losses(h, t_classes, codes, labels, 2)
    y, counts = losses.class_similarity(h, t_classes), torch.bincount(labels, minlength=3)
    for name, fn in losses.INPUT_TARGET_LOSSES.items():
        torch.testing.assert_close(fn(y, losses.target_gram(codes), labels, counts, 2), expected[name], msg=name)


def test_one_hot_loss_is_the_soft_target_loss_with_one_hot_weights():
    """max-rand's cross-entropy form gives the soft-target loss and gradient, absent classes included."""
    g = torch.Generator().manual_seed(1)
    labels = torch.tensor([0, 2, 2, 3, 0, 2, 5, 3])  # classes 1 and 4 absent
    counts = torch.bincount(labels, minlength=6)
    y, gram = torch.randn(8, 6, generator=g), torch.randn(6, 6, generator=g)
    codes, log_n = torch.eye(6), losses.log_counts(counts)
    chosen = losses.max_rand_choice(gram, counts)
    assert set(chosen.tolist()) <= {0, 2, 3, 5}  # only present classes are chosen
    wanted = losses.loss_and_grad(y, log_n, losses.max_rand_targets(gram, counts, 1)[labels])
    got = losses.one_hot_loss_and_grad(y, log_n, chosen[labels], codes)
    for a, b in zip(got, wanted):
        torch.testing.assert_close(a, b)
    # At layer 1, G is the identity: every present class chooses itself.
    assert losses.max_rand_choice(torch.eye(6), counts)[labels].equal(labels)


def _gradients_after_one_step(agent: SigpropAgent, x: torch.Tensor, y: torch.Tensor, head_mask=None) -> list:
    agent.optimizer.zero_grad(set_to_none=True)
    loss = agent.step(x, y, head_mask)
    params = [p for group in agent.optimizer.param_groups for p in group["params"]]
    return [loss] + [p.grad for p in params]


@pytest.mark.parametrize(
    "activation, loss, masked",
    [
        ("relu", "max-rand", False),
        ("tanh", "top-k", False),
        ("leaky-relu", "max-all", True),
        ("sigmoid", "max-rand", True),
    ],
)
def test_hand_written_gradients_equal_autograd(digits_experience, activation, loss, masked):
    """The MLP's hand-written step (the default) gives autograd's per-layer gradients and losses."""
    x, y = digits_experience.train_x[:48], digits_experience.train_y[:48] % 6  # classes 6..9 absent
    head_mask = None
    if masked:  # task-IL: only these outputs train
        head_mask = torch.full((10,), float("-inf"))
        head_mask[:6] = 0.0
    config = dict(hidden=(24, 20, 16), activation=activation, loss=loss, topk=4)
    manual = SigpropAgent(stream=_Stream(), config=SigpropConfig(**config), seed=3)
    reference = SigpropAgent(stream=_Stream(), config=SigpropConfig(**config, manual_gradients=False), seed=3)
    assert manual.manual and not reference.manual
    got = _gradients_after_one_step(manual, x, y, head_mask)
    wanted = _gradients_after_one_step(reference, x, y, head_mask)
    assert len(got) == len(wanted) == 1 + 2 * 4 + 1  # loss, 3 blocks and the head (weight, bias), S
    for i, (a, b) in enumerate(zip(got, wanted)):
        assert b.abs().sum() > 0
        torch.testing.assert_close(a, b, msg=f"tensor {i}")


def test_hand_written_gradients_equal_autograd_with_layer_local_replay(digits_experience):
    first = Experience(
        index=0,
        kind="supervised",
        train_x=digits_experience.train_x[:300],
        train_y=digits_experience.train_y[:300],
        classes=tuple(range(10)),
    )
    agent = SigpropAgent(stream=_Stream(), config=SigpropConfig(hidden=(24, 16), local_replay_size=40), seed=0)
    agent.learn(first)  # fills each region's memory
    reference = copy.deepcopy(agent)  # same weights, memories and generator state
    reference.manual = False
    x, y = digits_experience.train_x[300:332], digits_experience.train_y[300:332]
    for a, b in zip(_gradients_after_one_step(agent, x, y), _gradients_after_one_step(reference, x, y)):
        torch.testing.assert_close(a, b)


def test_inference_is_a_plain_forward_pass_without_the_signal(digits_experience):
    agent = SigpropAgent(stream=_Stream(), config=SigpropConfig(hidden=(32,), epochs=1), seed=0)
    agent.learn(digits_experience)
    before = agent.predict(digits_experience.test_x)
    torch.nn.init.zeros_(agent.signal[0].weight)  # the label projection plays no part
    torch.testing.assert_close(agent.predict(digits_experience.test_x), before)
    torch.testing.assert_close(before, agent.network(digits_experience.test_x))


def test_unknown_loss_variant_is_a_one_line_error():
    with pytest.raises(ConfigError) as info:
        SigpropConfig.from_dict({"loss": "max-rnd"})
    message = str(info.value)
    assert message.startswith("The 'loss' parameter of SigpropConfig must be one of 'max-rand'")
    assert "Got 'max-rnd' instead." in message and "\n" not in message


def test_layer_local_replay_keeps_one_memory_per_region_and_reduces_forgetting():
    from replaybench.registry import STREAMS

    factory, spec = STREAMS.load("split-digits")
    stream = factory(**spec.kwargs)
    first = stream.experiences[0]

    def accuracy_on_first(replay_size: int) -> tuple[float, SigpropAgent]:
        config = SigpropConfig(hidden=(48, 32), epochs=3, batch_size=32, lr=2e-3, local_replay_size=replay_size)
        agent = SigpropAgent(stream=stream, config=config, seed=0)
        for experience in stream.experiences[:3]:
            agent.learn(experience)
        return _accuracy(agent, first), agent

    without, _ = accuracy_on_first(0)
    with_replay, agent = accuracy_on_first(60)
    widths = [m.items()[0].shape[1] for m in agent.memories]
    assert widths == [64, 48, 32]  # each region stores its own input
    assert with_replay > without + 0.3
