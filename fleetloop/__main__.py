from fleetloop.cli import app

app()
