import os, time, shutil, sys
os.environ["JAX_PLATFORMS"]="cpu"
import ml_collections
from restore_jax.train.config_loading import load_config
from restore_jax.train.loop import Trainer
c = load_config("configs/baseline_sr.py:demo", sys.argv[2:])
c.data.source = ml_collections.ConfigDict({"name": "image_folder", "kwargs": {"root": "/work/shared/data/faces128", "on_error": "skip"}, "splits": {"train": {"subdir": "train"}, "val": {"subdir": "val"}}})
c.eval.sr_psnr_ssim.real_dir = 'none'
shutil.rmtree(sys.argv[1], ignore_errors=True)
t=time.time()
r = Trainer(c).fit(sys.argv[1])
print('total', time.time()-t)
