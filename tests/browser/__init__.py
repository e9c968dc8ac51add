import pytest

# The support module's checks are shared by the test modules: their failures are told in full.
pytest.register_assert_rewrite("tests.browser.console_support")
