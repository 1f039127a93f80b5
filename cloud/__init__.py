"""fleetloop cloud: verifies and stores signed gateway batches, signs desired device config,
serves the API and a dashboard.

Layers: routers/ (HTTP edge, thin) -> services/ (rules, no FastAPI) -> store.Store (the
interface) implemented by db.SqliteStore (the only module with SQL), which pg.PgStore runs on
PostgreSQL through a connection adapter.
"""
