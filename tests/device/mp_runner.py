# A tiny test runner for the MicroPython/CPython common subset (the port has no unittest or
# pytest). pytest starts it under both interpreters (test_device_units.py):
#
#   MICROPYPATH=REPO:REPO/tests/device micropython mp_runner.py TMPDIR DATADIR t_buffer [...]
#   PYTHONPATH=REPO:REPO/tests/device python mp_runner.py TMPDIR DATADIR t_buffer [...]
#
# Each test module holds plain functions `test_*(tmp)` that raise AssertionError (or anything)
# to fail; `tmp` is a fresh empty directory. A module may read DATA (DATADIR, set before its
# tests run) for fixtures the CPython side prepared, e.g. signed config envelopes.
# Prints one line per test and a summary; exit status 1 if anything failed.
import os
import sys


def _rmtree(path):
    for name in os.listdir(path):
        full = path + "/" + name
        try:
            os.remove(full)
        except OSError:
            _rmtree(full)
    os.rmdir(path)


def run(tmp_root, data_dir, names):
    passed = failed = 0
    counter = 0
    for modname in names:
        module = __import__(modname)
        module.DATA = data_dir
        tests = sorted(n for n in dir(module) if n.startswith("test_"))
        for name in tests:
            counter += 1
            tmp = tmp_root + "/t" + str(counter)
            os.mkdir(tmp)
            try:
                getattr(module, name)(tmp)
            except Exception as e:  # noqa: BLE001 - the runner reports every failure
                failed += 1
                print("FAIL " + modname + "." + name + ": " + type(e).__name__ + ": " + str(e))
                sys.print_exception(e) if hasattr(sys, "print_exception") else _tb()
            else:
                passed += 1
                print("PASS " + modname + "." + name)
                _rmtree(tmp)
    print("SUMMARY %s passed=%d failed=%d" % (sys.implementation.name, passed, failed))
    return failed


def _tb():
    import traceback

    traceback.print_exc()


if __name__ == "__main__":
    sys.exit(1 if run(sys.argv[1], sys.argv[2], sys.argv[3:]) else 0)
