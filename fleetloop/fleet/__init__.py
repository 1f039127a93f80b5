"""The fleet simulator: many products running the real device code in one process, on an
accelerated data clock, with behaviours whose truth is known (docs/simulator.md)."""
