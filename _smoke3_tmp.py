import os, time, shutil
os.environ["XLA_FLAGS"]="--xla_force_host_platform_device_count=2"
os.environ["JAX_PLATFORMS"]="cpu"
import ml_collections
from restore_jax.train.config_loading import load_config
from restore_jax.train.loop import Trainer
c = load_config("configs/baseline_sr.py:ci")
c.data.source = ml_collections.ConfigDict({"name": "image_folder", "kwargs": {"root": "/work/shared/data/faces128", "on_error": "skip"}, "splits": {"train": {"subdir": "train"}, "val": {"subdir": "val"}}})
shutil.rmtree('/tmp/smoke3', ignore_errors=True)
t=time.time()
r = Trainer(c).fit('/tmp/smoke3')
print('total', time.time()-t, r.eval_results)
