"""Environments: one PyBoy emulator as an RL environment (`env`), and N of them stepped together
in this process or in worker processes (`vector`)."""
