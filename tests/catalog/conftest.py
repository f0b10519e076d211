"""The checks' markers, registered for tests that import check modules outside a lemonade run."""


def pytest_configure(config):
    for line in ("requirement(*ids): requirement ids a check verifies", "uses(*endpoints): endpoints a check needs",
                 "scenarios(*specs): scenarios a check is meaningful under", "depth(name): depth a check needs"):
        config.addinivalue_line("markers", line)
