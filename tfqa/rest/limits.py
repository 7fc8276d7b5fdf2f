"""What one HTTP connection may hold, per process; the limits of every front end are `tfqa.serving.limits`."""

from __future__ import annotations

from dataclasses import dataclass

from tfqa.serving.limits import seconds_problem

@dataclass(frozen=True)
class ConnectionLimits:
    """Per-process connection limits (`serve`/`demo` flags of the same names)."""

    max_connections: int = 256  # open connections; more get 503 (each holds a file descriptor)
    read_timeout: float = 30.0  # seconds to receive a request's headers, and again its body; else 408
    idle_timeout: float = 5.0  # seconds a keep-alive connection may wait for its next request

    def problems(self) -> list[str]:
        """What makes these limits unusable (empty when they are fine)."""
        out = [f"--max-connections must be at least 1, not {self.max_connections}"] if self.max_connections < 1 else []
        for name in ("read_timeout", "idle_timeout"):
            problem = seconds_problem(getattr(self, name), f"--{name.replace('_', '-')}")
            out += [problem] if problem else []
        return out
