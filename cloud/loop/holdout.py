"""The C-MAPSS units kept out of the shipped model's training, for the simulated fleet.

When the loop is scored on the simulator's fleet, its engines must replay trajectories the
model never saw: the fleet is simulated with `units=FLEET_UNITS` (fleetloop.fleet.behaviour
takes that restriction), and the shipped model trains on TRAIN_UNITS only. A fixed list, not
a random draw, so the split is the same on every machine and in every artefact: every fifth
unit (20 of 100), which spreads the held-out lives over the whole range (128 to 362 cycles).
"""

from __future__ import annotations

ALL_UNITS = tuple(range(1, 101))
FLEET_UNITS = tuple(range(5, 101, 5))
TRAIN_UNITS = tuple(u for u in ALL_UNITS if u not in FLEET_UNITS)
