import pytest
import torch

# small networks on 2 cores: one thread avoids synchronisation overhead and keeps runs deterministic
torch.set_num_threads(1)

TINY = [
    "data.limit=256",
    "model.z_dim=8",
    "model.g_width=8",
    "model.d_width=8",
    "train.batch_size=16",
    "train.progress=false",
    "train.log_every=2",
    "train.sample_every=4",
    "train.checkpoint_every=4",
    "train.sample_count=16",
    "train.tensorboard=false",
]


@pytest.fixture
def tiny_overrides():
    return list(TINY)
