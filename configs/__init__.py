"""Shipped YAML configs (installed as ``agentsd.configs``; read with importlib.resources)."""
