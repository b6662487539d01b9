"""``python -m agentsd ...``: the CLI, for launchers that take a module (torchrun -m, accelerate launch -m)."""

from agentsd.cli import main

main()
