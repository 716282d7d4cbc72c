"""PPO, CleanRL-style: the policy network, GAE and the clipped update, top to bottom.

Sources: CleanRL `ppo_atari.py` (Huang et al.); "The 37 Implementation Details of Proximal Policy
Optimization" (Huang et al., ICLR blog track 2022) — numbered below as "detail N"; Schulman et al.
2017 (PPO) and 2016 (GAE). Unlike CleanRL we bootstrap on time-limit truncation (Pardo et al.
2018, "Time Limits in Reinforcement Learning"): the env's pool returns the final observation and
the trainer adds γ·V(final_obs) to the truncated step's reward, as SB3 does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.distributions.categorical import Categorical

from trainer.rl.distributed import Replicas

#: The single process: its collectives are the plain computations.
ALONE = Replicas()


def layer_init(layer: nn.Module, std: float = math.sqrt(2), bias: float = 0.0) -> nn.Module:
    """Orthogonal weights, constant bias (detail 2)."""
    torch.nn.init.orthogonal_(layer.weight, std)
    torch.nn.init.constant_(layer.bias, bias)
    return layer


class TileEncoder(nn.Module):
    """Tile ids (B, C, H, W) → features. Each tile id gets a learned embedding (tile ids are
    categories, not intensities), then two stride-2 convs. Sized so a one-core CPU learner
    keeps up with the emulators: measured per PPO update (6 epochs × 256 samples, 1 thread),
    8/16 channels with 4-dim embeddings cost 57 ms, 16/32 with 8 dims 100 ms, and a stride-1
    32/32 net with 256 hidden units 365 ms."""

    def __init__(
        self, obs_shape: tuple[int, ...], num_tile_ids: int, hidden: int, embed_dim: int = 4
    ):
        super().__init__()
        stack, height, width = obs_shape
        self.num_tile_ids = num_tile_ids
        self.embed = nn.Embedding(num_tile_ids, embed_dim)
        self.conv = nn.Sequential(
            layer_init(nn.Conv2d(stack * embed_dim, 8, 3, stride=2, padding=1)),
            nn.ReLU(),
            layer_init(nn.Conv2d(8, 16, 3, stride=2, padding=1)),
            nn.ReLU(),
            nn.Flatten(),
        )
        with torch.no_grad():
            flat = self.conv(torch.zeros(1, stack * embed_dim, height, width)).shape[1]
        self.fc = nn.Sequential(layer_init(nn.Linear(flat, hidden)), nn.ReLU())

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        ids = obs.long().clamp_(0, self.num_tile_ids - 1)  # (B, C, H, W)
        batch, stack, height, width = ids.shape
        # index_select rather than nn.Embedding's forward: its backward is an index_add, where
        # embedding_dense_backward sorts the ids first (22% of an update in the profile).
        x = self.embed.weight.index_select(0, ids.reshape(-1)).view(batch, stack, height, width, -1)
        x = x.permute(0, 1, 4, 2, 3).flatten(1, 2)  # (B, C·E, H, W)
        if not torch.is_grad_enabled():
            return self.fc(native_convs(self.conv, x))
        # oneDNN's backward in channels-last (NHWC) layout: measured per PPO update (6 × 256
        # samples, 1 thread, AMD EPYC) 136 → 93 ms with 4 stacked frames, the same with 1.
        return self.fc(self.conv(x.contiguous(memory_format=torch.channels_last)))


def native_convs(layers: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """`layers` (Conv2d, ReLU, …, Flatten) without autograd, through PyTorch's native
    convolution kernel: for the policy's tiny batches oneDNN's per-call set-up dominates
    (measured on a 2-CPU AMD EPYC for a 4→8 3×3 stride-2 conv on 2×18×20: 38 µs with oneDNN,
    13 µs native). Training keeps oneDNN, faster there (its backward is 2× the native one)."""
    for layer in layers:
        if isinstance(layer, nn.Conv2d):
            x = torch._C._nn.thnn_conv2d(
                x, layer.weight, layer.kernel_size, layer.bias, layer.stride, layer.padding
            )
        else:
            x = layer(x)
    return x


#: The smallest side the Nature-DQN convs (8/4, 4/2, 3/1) take: 36 pixels (downsample ≤ 4).
NATURE_MIN_SIDE = 36


class PixelEncoder(nn.Module):
    """Grayscale frames (B, C, H, W) uint8 → features: the Nature-DQN conv net (detail 7's
    `/ 255` scaling), with strides that suit 72×80 or 144×160 inputs. Frames smaller than
    `NATURE_MIN_SIDE` (downsample 5–8: 18×20 to 29×32) would shrink to nothing there; they get
    two padded 3×3 stride-2 convs instead, as the tile encoder's grid does."""

    def __init__(self, obs_shape: tuple[int, ...], hidden: int):
        super().__init__()
        stack, height, width = obs_shape
        if min(height, width) >= NATURE_MIN_SIDE:
            convs = [nn.Conv2d(stack, 32, 8, stride=4), nn.Conv2d(32, 64, 4, stride=2)]
            convs.append(nn.Conv2d(64, 64, 3, stride=1))
        else:
            convs = [nn.Conv2d(stack, 32, 3, stride=2, padding=1)]
            convs.append(nn.Conv2d(32, 64, 3, stride=2, padding=1))
        layers: list[nn.Module] = []
        for conv in convs:
            layers += [layer_init(conv), nn.ReLU()]
        self.conv = nn.Sequential(*layers, nn.Flatten())
        with torch.no_grad():
            flat = self.conv(torch.zeros(1, stack, height, width)).shape[1]
        self.fc = nn.Sequential(layer_init(nn.Linear(flat, hidden)), nn.ReLU())

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(obs.float() / 255.0))


class Agent(nn.Module):
    """Shared encoder, a policy head (std 0.01) and a value head (std 1) — detail 2."""

    def __init__(
        self,
        obs_shape: tuple[int, ...],
        num_actions: int,
        obs_type: str,
        hidden: int = 256,
        num_tile_ids: int = 768,
    ):
        super().__init__()
        if obs_type == "tiles":
            self.encoder: nn.Module = TileEncoder(obs_shape, num_tile_ids, hidden)
        elif obs_type == "pixels":
            self.encoder = PixelEncoder(obs_shape, hidden)
        else:
            raise ValueError(f"env.obs.type: unknown observation type {obs_type!r}")
        self.actor = layer_init(nn.Linear(hidden, num_actions), std=0.01)
        self.critic = layer_init(nn.Linear(hidden, 1), std=1.0)

    def get_value(self, obs: torch.Tensor) -> torch.Tensor:
        return self.critic(self.encoder(obs)).squeeze(-1)

    def greedy_action(self, obs: torch.Tensor) -> torch.Tensor:
        """The most likely action (for watching a policy; training always samples)."""
        return self.actor(self.encoder(obs)).argmax(-1)

    def act(
        self, obs: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(action, log π(action), value) for collecting: an action sampled from `generator`
        (the collector's own), with the fewest ops (no distribution object, no entropy)."""
        hidden = self.encoder(obs)
        logp = torch.log_softmax(self.actor(hidden), -1)
        action = torch.multinomial(logp.exp(), 1, generator=generator)
        return action.squeeze(-1), logp.gather(-1, action).squeeze(-1), self.critic(hidden)[:, 0]

    def get_action_and_value(
        self,
        obs: torch.Tensor,
        action: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(action, log π(action), entropy, value); samples an action when none is given, from
        `generator` if one is given (the collector's own, so a resumed run draws the same
        actions and a learner in another thread never shares its random stream)."""
        hidden = self.encoder(obs)
        # No argument validation: the logits come from our own network (saves ~15% per call).
        dist = Categorical(logits=self.actor(hidden), validate_args=False)
        if action is None:
            # What Categorical.sample does, with a generator it does not accept.
            action = torch.multinomial(dist.probs, 1, generator=generator).squeeze(-1)
        return action, dist.log_prob(action), dist.entropy(), self.critic(hidden).squeeze(-1)


def compute_gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    episode_ends: torch.Tensor,
    next_value: torch.Tensor,
    gamma: float,
    gae_lambda: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalized advantage estimation (Schulman et al. 2016; detail 5).

    Shapes: `rewards`, `values`, `episode_ends` are (T, N); `next_value` is (N,), the value of
    the observation after the last step. `episode_ends[t]` is 1 where step t ended an episode
    (terminated or truncated): no bootstrapping across it. For truncation the caller has already
    added γ·V(final_obs) to `rewards[t]`. Returns `(advantages, returns)`, both (T, N).
    """
    steps = rewards.shape[0]
    advantages = torch.zeros_like(rewards)
    last_gae = torch.zeros_like(next_value)
    for t in reversed(range(steps)):
        next_values = next_value if t == steps - 1 else values[t + 1]
        nonterminal = 1.0 - episode_ends[t]
        delta = rewards[t] + gamma * next_values * nonterminal - values[t]
        last_gae = delta + gamma * gae_lambda * nonterminal * last_gae
        advantages[t] = last_gae
    return advantages, advantages + values


@dataclass
class Batch:
    """A flattened rollout (the `b_` tensors of CleanRL), N·T samples."""

    obs: torch.Tensor
    actions: torch.Tensor
    logprobs: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor
    values: torch.Tensor
    # log π_prox(a|s) of the policy the update starts from, when it is not the one that acted
    # (`ppo.async_rollout`: the actor lags one update); None: the same policy.
    prox_logprobs: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.actions.shape[0]


@dataclass(frozen=True)
class LossConfig:
    clip_coef: float
    clip_vloss: bool
    norm_adv: bool
    ent_coef: float
    vf_coef: float


def ppo_losses(
    newlogprob: torch.Tensor,
    entropy: torch.Tensor,
    newvalue: torch.Tensor,
    mb_logprobs: torch.Tensor,
    mb_advantages: torch.Tensor,
    mb_returns: torch.Tensor,
    mb_values: torch.Tensor,
    cfg: LossConfig,
    mb_prox_logprobs: torch.Tensor | None = None,
    replicas: Replicas = ALONE,
) -> dict[str, torch.Tensor]:
    """The clipped surrogate objective, (clipped) value loss and entropy bonus of one minibatch.

    With `mb_prox_logprobs` (the actor lagged the learner), the decoupled objective of Hilton et
    al. 2021 ("Batch size-invariance for policy optimization", eq. 3): the ratio is clipped
    around the policy the update starts from, not the stale one that acted, and the behaviour
    policy enters only as an importance weight π_prox/π_behav, truncated at 1 as V-trace's ρ̄
    (Espeholt et al. 2018). With several `replicas`, advantages are normalised over the global
    minibatch (every replica's share of it)."""
    weight: torch.Tensor | float = 1.0
    if mb_prox_logprobs is not None:
        weight = (mb_prox_logprobs - mb_logprobs).exp().clamp(max=1.0)
        mb_logprobs = mb_prox_logprobs
    logratio = newlogprob - mb_logprobs
    ratio = logratio.exp()
    with torch.no_grad():
        # k3 estimator of KL(old‖new) (Schulman, "Approximating KL Divergence"; detail 12).
        approx_kl = ((ratio - 1) - logratio).mean()
        clipfrac = ((ratio - 1.0).abs() > cfg.clip_coef).float().mean()
    if cfg.norm_adv and mb_advantages.numel() > 1:  # detail 7: per minibatch
        mb_advantages = replicas.normalize(mb_advantages)
    pg_loss1 = -mb_advantages * ratio
    pg_loss2 = -mb_advantages * torch.clamp(ratio, 1 - cfg.clip_coef, 1 + cfg.clip_coef)
    pg_loss = (torch.max(pg_loss1, pg_loss2) * weight).mean()
    if cfg.clip_vloss:  # detail 9
        v_loss_unclipped = (newvalue - mb_returns) ** 2
        v_clipped = mb_values + torch.clamp(newvalue - mb_values, -cfg.clip_coef, cfg.clip_coef)
        v_loss_clipped = (v_clipped - mb_returns) ** 2
        v_loss = 0.5 * torch.max(v_loss_unclipped, v_loss_clipped).mean()
    else:
        v_loss = 0.5 * ((newvalue - mb_returns) ** 2).mean()
    entropy_loss = entropy.mean()
    loss = pg_loss - cfg.ent_coef * entropy_loss + v_loss * cfg.vf_coef
    return {
        "loss": loss,
        "policy_loss": pg_loss,
        "value_loss": v_loss,
        "entropy": entropy_loss,
        "approx_kl": approx_kl,
        "clipfrac": clipfrac,
    }


def ppo_update(
    agent: Agent,
    optimizer: torch.optim.Optimizer,
    batch: Batch,
    *,
    update_epochs: int,
    minibatch_size: int,
    max_grad_norm: float,
    target_kl: float | None,
    cfg: LossConfig,
    generator: torch.Generator | None = None,
    replicas: Replicas = ALONE,
) -> dict[str, float]:
    """`update_epochs` passes of shuffled minibatches (detail 6); returns the last-epoch stats
    (CleanRL logs the last minibatch's; we average the last epoch's, which is less noisy).

    With several `replicas` (DD-PPO), `minibatch_size` is this replica's share of the global
    minibatch; gradients are averaged over the replicas before clipping and stepping, and the
    early stop uses the mean KL, so every replica takes the same steps."""
    size = len(batch)
    minibatch_size = min(minibatch_size, size)
    totals: dict[str, float] = {}
    count = epochs_run = 0
    for _ in range(update_epochs):
        epochs_run += 1
        totals, count = {}, 0
        order = torch.randperm(size, generator=generator)
        approx_kl = 0.0
        for start in range(0, size, minibatch_size):
            mb = order[start : start + minibatch_size]
            _, newlogprob, entropy, newvalue = agent.get_action_and_value(
                batch.obs[mb], batch.actions[mb]
            )
            losses = ppo_losses(
                newlogprob,
                entropy,
                newvalue,
                batch.logprobs[mb],
                batch.advantages[mb],
                batch.returns[mb],
                batch.values[mb],
                cfg,
                None if batch.prox_logprobs is None else batch.prox_logprobs[mb],
                replicas,
            )
            optimizer.zero_grad(set_to_none=True)
            losses["loss"].backward()
            replicas.average_gradients(agent.parameters())
            nn.utils.clip_grad_norm_(agent.parameters(), max_grad_norm)  # detail 11
            optimizer.step()
            for key, value in losses.items():
                totals[key] = totals.get(key, 0.0) + float(value.detach())
            count += 1
            approx_kl = float(losses["approx_kl"])
        if target_kl is not None and replicas.mean(approx_kl) > target_kl:  # detail 12
            break
    stats = {key: value / max(count, 1) for key, value in totals.items()}
    stats["explained_variance"] = explained_variance(batch.values, batch.returns)
    stats["epochs"] = float(epochs_run)  # logged as charts/update_epochs: not a loss
    return stats


def explained_variance(values: torch.Tensor, returns: torch.Tensor) -> float:
    """1 − Var(returns − values) / Var(returns): how much of the return the critic predicts."""
    y_pred, y_true = values.cpu().numpy(), returns.cpu().numpy()
    var_y = np.var(y_true)
    return float("nan") if var_y == 0 else float(1 - np.var(y_true - y_pred) / var_y)


def make_optimizer(agent: Agent, learning_rate: float) -> torch.optim.Adam:
    """Adam with eps 1e-5 (detail 3), fused into one kernel per step (PyTorch ≥ 2.4 on CPU
    and CUDA): the update of a small network is otherwise a few ops per parameter tensor."""
    return torch.optim.Adam(agent.parameters(), lr=learning_rate, eps=1e-5, fused=True)


def annealed_lr(learning_rate: float, global_step: int, total_steps: int, anneal: bool) -> float:
    """Linear decay to 0 over training (detail 4), by environment steps so resume is exact."""
    if not anneal:
        return learning_rate
    return learning_rate * max(0.0, 1.0 - global_step / total_steps)
