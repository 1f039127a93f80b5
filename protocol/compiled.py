"""The cloud's per-record checks of a batch compiled from protocol/_fastpath.c, or None where
this install could not build them (the extension is optional, see pyproject.toml): callers
then run the same checks in Python, which the tests hold to the same answers."""

try:
    from protocol import _fastpath as checks
except ImportError:  # no C compiler or no OpenSSL headers when the package was installed
    checks = None  # type: ignore[assignment]
