"""The keep-it-optimized loop's predictive maintenance: remaining useful life (RUL) of engines
from their telemetry, trained and scored on NASA's C-MAPSS FD001 run-to-failure data.

One module per concept: data (reading NASA's files into one table), features (per-cycle
features, vectorised), model (the regressor and its versioned artefact), evaluation (metrics,
cross-validation by engine), nasa (scoring a test split in NASA's layout), holdout (the units
kept for the simulated fleet). Nothing here imports FastAPI, the device or the simulator.
"""
