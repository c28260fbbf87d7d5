from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig

import twm.train.config  # noqa: F401  (schemas)

CONF = str(Path(__file__).resolve().parents[1] / "conf")
TINY = ["task.s=4", "task.d=4", "model.hidden_size=16", "trainer.max_steps=20", "data.test_batches=2",
        "callbacks.checkpoint.every_n_train_steps=10", "curriculum.ladder=[2,4,8]", "curriculum.threshold=0.6"]


@pytest.fixture(autouse=True)
def _no_wandb_network(monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.setenv("WANDB_SILENT", "true")


def compose_train(overrides, output_dir=None, config_name="train"):
    """Compose ``conf/<config_name>.yaml`` as Hydra would, with ``paths.output_dir`` pointed at ``output_dir``."""
    GlobalHydra.instance().clear()
    extra = [f"paths.output_dir={output_dir}"] if output_dir is not None else []
    with initialize_config_dir(version_base="1.3", config_dir=CONF):
        cfg = compose(config_name, return_hydra_config=True, overrides=list(overrides) + extra)
        HydraConfig().set_config(cfg)
    return cfg
