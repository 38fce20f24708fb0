"""Fixtures of the zoo tests."""
import pytest
from tiny_config import make_tiny_config


@pytest.fixture
def tiny_config():
  return make_tiny_config
