"""Reinforcement learning: PPO (`ppo`), rollout storage and collection (`rollout`), the training
loop (`loop`), and what it sets up around itself (`setup`, `seeding`, `stopping`, `console`).
Imports games and envs below it, never Kubernetes, the launcher, the CLI or MLflow."""
