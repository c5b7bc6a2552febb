"""The demo agents' configs (see gateway.demo._agent_configs)."""

from gateway.demo._agent_configs import write_agent_configs

__all__ = ["write_agent_configs"]
