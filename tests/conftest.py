import os

import pytest

from ttsopt.engine import sources
from ttsopt.engine.pipeline import Pipeline


@pytest.fixture(scope="session", autouse=True)
def weights_cache(tmp_path_factory):
    """A cache of random weights of this session's own: no test reads a user's stale entry.
    Set in the environment, so the kernels and processes the tests start share it."""
    path = tmp_path_factory.mktemp("weights-cache")
    os.environ["TTSOPT_CACHE"] = str(path)
    return path


@pytest.fixture(scope="session")
def tiny_model():
    return sources.load("tiny", device="cpu", seed=0)


@pytest.fixture()
def tiny_pipeline(tiny_model):
    return Pipeline(tiny_model)


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory, tiny_model):
    return sources.save_local(tiny_model, tmp_path_factory.mktemp("tiny-weights"))
