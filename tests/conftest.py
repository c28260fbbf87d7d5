import pytest
import torch

from twm.train.config import CONF_DIR, compose_train_config

CONF = str(CONF_DIR)
TINY = ["task.s=4", "task.d=4", "model.hidden_size=16", "trainer.max_steps=20", "data.test_batches=2",
        "callbacks.checkpoint.every_n_train_steps=10", "curriculum.ladder=[2,4,8]", "curriculum.threshold=0.6"]


@pytest.fixture(autouse=True)
def _no_wandb_network(monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.setenv("WANDB_SILENT", "true")


@pytest.fixture
def one_thread():
    """One torch thread for the test (restored afterwards): bitwise comparisons and timings do not depend on how many
    threads the machine offers. Modules opt in with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


compose_train = compose_train_config  # conf/train.yaml as Hydra composes it, output in a given folder
