"""What the fusion tests of tests/cli (test_activation.py, test_attention.py,
test_norm.py) share: running flagos, whether it lists an OpenCL device, and
saving a model's inputs as the -i arguments of `flagos run`."""
import os
import subprocess


def run(cmd, env=None):
    """cmd with the environment plus env, its output captured as text."""
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run(cmd, env=e, capture_output=True, text=True)


def has_opencl(flagos):
    """Whether `flagos devices` lists an OpenCL device (PoCL in CI)."""
    return "  opencl:0" in run([flagos, "devices"]).stdout


def input_args(work, kind, feeds):
    """Saves each input of feeds (name -> array) as WORK/KIND_NAME.npy; the -i arguments naming them."""
    import numpy as np  # the callers skip (exit 77) without numpy
    args = []
    for name, v in feeds.items():
        f = os.path.join(work, "%s_%s.npy" % (kind, name))
        np.save(f, v)
        args += ["-i", "%s=%s" % (name, f)]
    return args
