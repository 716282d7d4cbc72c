"""The PPO math, checked against hand computations (SB3's tests/test_gae.py is the model)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from trainer.rl.ppo import (
    Agent,
    Batch,
    LossConfig,
    annealed_lr,
    compute_gae,
    make_optimizer,
    ppo_losses,
    ppo_update,
)

GAMMA, LAM = 0.9, 0.8


def gae(rewards, values, ends, next_value, gamma=GAMMA, lam=LAM):
    """`compute_gae` for one environment given as lists: (advantages, returns) as arrays."""
    adv, ret = compute_gae(
        torch.tensor(rewards, dtype=torch.float32)[:, None],
        torch.tensor(values, dtype=torch.float32)[:, None],
        torch.tensor(ends, dtype=torch.float32)[:, None],
        torch.tensor([next_value], dtype=torch.float32),
        gamma,
        lam,
    )
    return adv[:, 0].numpy(), ret[:, 0].numpy()


# Closed forms, each derived independently of the recursion (SB3's tests/test_gae.py does the same).


@pytest.mark.parametrize("length", [1, 5, 40])
def test_gae_lambda_one_is_the_discounted_return_minus_the_value(length):
    """λ = 1: A_t = Σ_k γ^k r_{t+k} + γ^(T−t) V_next − V_t (Monte Carlo with a bootstrap)."""
    rng = np.random.default_rng(length)
    rewards, values = rng.normal(size=length), rng.normal(size=length)
    next_value = 1.7
    adv, ret = gae(rewards, values, [0] * length, next_value, lam=1.0)
    for t in range(length):
        discounted = sum(GAMMA**k * rewards[t + k] for k in range(length - t))
        expected_return = discounted + GAMMA ** (length - t) * next_value
        assert ret[t] == pytest.approx(expected_return, abs=1e-4)
        assert adv[t] == pytest.approx(expected_return - values[t], abs=1e-4)


def test_gae_lambda_zero_is_the_one_step_td_error():
    """λ = 0: A_t = δ_t = r_t + γ V_{t+1} (1 − end_t) − V_t, no recursion."""
    rewards, values, ends = [1.0, -2.0, 0.5, 3.0], [0.2, 0.4, -0.1, 0.3], [0, 1, 0, 0]
    adv, _ = gae(rewards, values, ends, 2.0, lam=0.0)
    nexts = [0.4, -0.1, 0.3, 2.0]
    expected = [
        r + GAMMA * v1 * (1 - e) - v0
        for r, v0, v1, e in zip(rewards, values, nexts, ends, strict=True)
    ]
    assert np.allclose(adv, expected, atol=1e-6)


@pytest.mark.parametrize("length", [1, 3, 25])
def test_gae_with_constant_reward_and_value_is_a_geometric_series(length):
    """r and V constant, no ending: δ = r − (1 − γ) V at every step, so
    A_t = δ (1 − (γλ)^(T−t)) / (1 − γλ), with the bootstrap V_next = V."""
    r, v = 0.5, 2.0
    adv, _ = gae([r] * length, [v] * length, [0] * length, v)
    delta, decay = r - (1 - GAMMA) * v, GAMMA * LAM
    expected = [delta * (1 - decay ** (length - t)) / (1 - decay) for t in range(length)]
    assert np.allclose(adv, expected, atol=1e-5)


def test_gae_episode_of_ones_counts_the_steps_left():
    """SB3's case: reward 1 per step, V ≡ 0, γ = λ = 1, the last step terminates: the return at
    t is the number of steps left, and nothing leaks past the end into the next episode."""
    adv, ret = gae([1.0] * 6, [0.0] * 6, [0, 0, 1, 0, 0, 1], 100.0, gamma=1.0, lam=1.0)
    assert ret.tolist() == [3.0, 2.0, 1.0, 3.0, 2.0, 1.0]
    assert adv.tolist() == ret.tolist()


def test_gae_first_steps_by_explicit_numbers():
    # Two steps, the first ends the episode: A_0 = r_0 - V_0 ; A_1 = r_1 + γ V_next - V_1.
    adv, _ = compute_gae(
        torch.tensor([[2.0], [1.0]]),
        torch.tensor([[0.5], [0.25]]),
        torch.tensor([[1.0], [0.0]]),
        torch.tensor([1.0]),
        GAMMA,
        LAM,
    )
    assert adv[0, 0].item() == pytest.approx(1.5)
    assert adv[1, 0].item() == pytest.approx(1.0 + 0.9 * 1.0 - 0.25)


def test_truncation_bootstrap_equals_continuing_value():
    """A truncated step whose reward carries γ·V(final_obs) gives the same advantage as if the
    episode had continued into a state of that value (Pardo et al. 2018)."""
    v_final = 3.0
    adv_trunc, _ = compute_gae(
        torch.tensor([[1.0 + GAMMA * v_final]]),
        torch.tensor([[0.5]]),
        torch.tensor([[1.0]]),
        torch.tensor([123.0]),
        GAMMA,
        LAM,
    )
    adv_cont, _ = compute_gae(
        torch.tensor([[1.0]]),
        torch.tensor([[0.5]]),
        torch.tensor([[0.0]]),
        torch.tensor([v_final]),
        GAMMA,
        LAM,
    )
    assert adv_trunc.item() == pytest.approx(adv_cont.item())


def test_gae_is_per_environment():
    """Two envs side by side: env 0 ends at step 0, env 1 runs on; each by hand."""
    rewards = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    values = torch.zeros(2, 2)
    ends = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    adv, _ = compute_gae(rewards, values, ends, torch.tensor([2.0, 2.0]), GAMMA, LAM)
    # env 0: A_0 = r_0 (ended); A_1 = r_1 + γ·2.  env 1: A_1 = 1 + γ·2; A_0 = 0 + γλ·A_1.
    assert adv[:, 0].tolist() == pytest.approx([1.0, GAMMA * 2.0])
    assert adv[:, 1].tolist() == pytest.approx([GAMMA * LAM * (1 + GAMMA * 2.0), 1 + GAMMA * 2.0])


CFG = LossConfig(clip_coef=0.2, clip_vloss=True, norm_adv=False, ent_coef=0.01, vf_coef=0.5)


def test_losses_by_hand():
    old_logp = torch.log(torch.tensor([0.5, 0.5]))
    new_logp = torch.log(torch.tensor([0.75, 0.25]))  # ratios 1.5 and 0.5
    adv = torch.tensor([1.0, -2.0])
    returns = torch.tensor([1.0, 0.0])
    old_values = torch.tensor([0.0, 0.0])
    new_values = torch.tensor([0.5, 0.5])
    entropy = torch.tensor([0.6, 0.4])
    out = ppo_losses(new_logp, entropy, new_values, old_logp, adv, returns, old_values, CFG)
    # policy: max(-A r, -A clip(r)) → sample 0: max(-1.5, -1.2) = -1.2 ; sample 1: max(1.0, 1.6) = 1.6
    assert out["policy_loss"].item() == pytest.approx((-1.2 + 1.6) / 2)
    # value: unclipped (0.5-1)²=0.25, (0.5-0)²=0.25 ; clipped v=0.2: (0.2-1)²=0.64, (0.2-0)²=0.04
    assert out["value_loss"].item() == pytest.approx(0.5 * (0.64 + 0.25) / 2)
    assert out["entropy"].item() == pytest.approx(0.5)
    expected_loss = 0.2 - 0.01 * 0.5 + 0.5 * out["value_loss"].item()
    assert out["loss"].item() == pytest.approx(expected_loss)
    assert out["clipfrac"].item() == pytest.approx(1.0)
    ratio = torch.tensor([1.5, 0.5])
    assert out["approx_kl"].item() == pytest.approx(((ratio - 1) - ratio.log()).mean().item())


def test_decoupled_losses_clip_around_the_proximal_policy_and_weight_by_the_behaviour():
    """Async collection: the actor (behaviour) lags the learner. The ratio is taken against the
    proximal policy the update starts from; π_prox/π_behav weighs each sample, truncated at 1."""
    behaviour = torch.log(torch.tensor([0.5, 0.5]))
    prox = torch.log(torch.tensor([0.25, 0.75]))  # weights 0.5 and 1.5 → truncated to 1
    new_logp = torch.log(torch.tensor([0.3, 0.75]))  # ratios to prox 1.2 and 1.0
    adv = torch.tensor([1.0, -2.0])
    zeros, ent = torch.zeros(2), torch.tensor([0.5, 0.5])
    args = (new_logp, ent, zeros, behaviour, adv, zeros, zeros, CFG)
    out = ppo_losses(*args, mb_prox_logprobs=prox)
    # sample 0: max(-1·1.2, -1·clip(1.2)=−1.2) = −1.2, weight 0.5; sample 1: 2·1.0 = 2.0, weight 1
    assert out["policy_loss"].item() == pytest.approx((-1.2 * 0.5 + 2.0) / 2)
    # With the proximal policy equal to the behaviour one it is plain PPO, sample for sample.
    same = ppo_losses(*args, mb_prox_logprobs=behaviour)
    plain = ppo_losses(*args)
    assert same["policy_loss"].item() == pytest.approx(plain["policy_loss"].item())


def test_unclipped_value_loss_and_advantage_normalization():
    cfg = LossConfig(clip_coef=0.2, clip_vloss=False, norm_adv=True, ent_coef=0.0, vf_coef=1.0)
    logp = torch.zeros(2)
    out = ppo_losses(
        logp,
        torch.zeros(2),
        torch.tensor([2.0, 0.0]),
        logp,
        torch.tensor([3.0, 1.0]),
        torch.tensor([0.0, 0.0]),
        torch.zeros(2),
        cfg,
    )
    assert out["value_loss"].item() == pytest.approx(0.5 * (4.0 + 0.0) / 2)
    # normalized advantages are ±1/√2·… with ratio 1: policy loss = -mean(norm adv) = 0
    assert out["policy_loss"].item() == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize(
    "obs_type, shape, dtype",
    [("tiles", (1, 18, 20), torch.int16), ("pixels", (2, 72, 80), torch.uint8)],
)
def test_agent_shapes(obs_type, shape, dtype):
    agent = Agent(shape, num_actions=5, obs_type=obs_type, hidden=32)
    obs = torch.randint(0, 200, (3, *shape)).to(dtype)
    action, logp, ent, value = agent.get_action_and_value(obs)
    assert action.shape == logp.shape == ent.shape == value.shape == (3,)
    assert agent.get_value(obs).shape == (3,)
    assert torch.all(ent <= math.log(5) + 1e-5)


@pytest.mark.parametrize("downsample", range(1, 9))
def test_pixel_agent_takes_every_downsample_the_spec_allows(downsample):
    """Found by probing: downsample 5–8 (frames of 18×20 to 29×32) shrank to nothing in the
    Nature-DQN convs and crashed the first rollout; small frames get padded stride-2 convs."""
    from trainer.spec import validate_spec

    spec = validate_spec({"name": "px", "env": {"obs": {"type": "pixels", "downsample": 5}}})
    assert spec.env.obs.downsample == 5  # the spec's range is 1–8
    shape = (2, -(-144 // downsample), -(-160 // downsample))  # what `screen[::n, ::n]` keeps
    agent = Agent(shape, num_actions=4, obs_type="pixels", hidden=32)
    obs = torch.randint(0, 256, (3, *shape)).to(torch.uint8)
    _, logp, _, value = agent.get_action_and_value(obs)
    logp.sum().backward()
    assert value.shape == (3,) and all(p.grad is not None for p in agent.encoder.parameters())
    with torch.inference_mode():
        assert agent.act(obs)[0].shape == (3,)


def test_update_moves_policy_towards_advantaged_action():
    torch.manual_seed(0)
    agent = Agent((1, 4, 4), num_actions=3, obs_type="tiles", hidden=16)
    obs = torch.zeros(64, 1, 4, 4, dtype=torch.int16)
    actions = torch.full((64,), 2)
    with torch.no_grad():
        _, logp, _, values = agent.get_action_and_value(obs, actions)
    batch = Batch(obs, actions, logp, torch.ones(64), values + 1.0, values)
    opt = make_optimizer(agent, 1e-2)
    stats = ppo_update(
        agent,
        opt,
        batch,
        update_epochs=4,
        minibatch_size=16,
        max_grad_norm=0.5,
        target_kl=None,
        cfg=CFG,
    )
    with torch.no_grad():
        _, new_logp, _, _ = agent.get_action_and_value(obs, actions)
    assert new_logp.mean() > logp.mean()
    assert {
        "policy_loss",
        "value_loss",
        "entropy",
        "approx_kl",
        "clipfrac",
        "explained_variance",
    } <= set(stats)


def test_zero_learning_rate_changes_nothing():
    torch.manual_seed(0)
    agent = Agent((1, 4, 4), num_actions=3, obs_type="tiles", hidden=16)
    before = [p.detach().clone() for p in agent.parameters()]
    obs = torch.zeros(8, 1, 4, 4, dtype=torch.int16)
    actions = torch.zeros(8, dtype=torch.long)
    with torch.no_grad():
        _, logp, _, values = agent.get_action_and_value(obs, actions)
    batch = Batch(obs, actions, logp, torch.ones(8), values, values)
    ppo_update(
        agent,
        make_optimizer(agent, 0.0),
        batch,
        update_epochs=2,
        minibatch_size=4,
        max_grad_norm=0.5,
        target_kl=None,
        cfg=CFG,
    )
    assert all(torch.equal(a, b) for a, b in zip(before, agent.parameters(), strict=True))


def test_target_kl_stops_epochs_early():
    torch.manual_seed(0)
    agent = Agent((1, 4, 4), num_actions=3, obs_type="tiles", hidden=16)
    obs = torch.zeros(32, 1, 4, 4, dtype=torch.int16)
    actions = torch.full((32,), 1)
    with torch.no_grad():
        _, logp, _, values = agent.get_action_and_value(obs, actions)
    batch = Batch(obs, actions, logp, torch.ones(32) * 10, values, values)
    stats = ppo_update(
        agent,
        make_optimizer(agent, 0.5),
        batch,
        update_epochs=10,
        minibatch_size=32,
        max_grad_norm=10.0,
        target_kl=1e-6,
        cfg=CFG,
    )
    assert stats["epochs"] < 10


@pytest.mark.parametrize(
    "step, anneal, expected", [(0, True, 1.0), (50, True, 0.5), (100, True, 0.0), (50, False, 1.0)]
)
def test_annealed_lr(step, anneal, expected):
    assert annealed_lr(1.0, step, 100, anneal) == pytest.approx(expected)
