pytest_plugins = ["tests.support.lab"]
