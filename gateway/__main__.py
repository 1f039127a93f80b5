"""`python -m gateway run|diag ...` (the same commands as `fleetloop gateway ...`)."""

from gateway.cli import app

app(prog_name="python -m gateway")
