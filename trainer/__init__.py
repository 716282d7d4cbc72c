"""PPO on Game Boy games through PyBoy, many emulators in parallel, as Kubernetes batch Jobs."""

__version__ = "0.1.0"
