"""Engine test settings."""


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "crash: kill -9 tests that start worker processes (run by default; select with -m crash)"
    )
