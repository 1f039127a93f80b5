"""The cloud's rules, free of FastAPI: each function takes a store.Store and plain values."""
