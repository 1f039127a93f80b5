"""HTTP routers: thin; auth and lookups are dependencies (cloud.deps), rules are services."""
