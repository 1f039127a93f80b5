"""The one `fleetloop` CLI and the orchestrations that span parts (demo, test stacks)."""
