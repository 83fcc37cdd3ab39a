"""What the fusion tests of tests/cli (test_activation.py, test_attention.py,
test_norm.py) share: running flagos, running a bundle traced on a device,
whether flagos lists an OpenCL device, and saving a model's inputs as the -i
arguments of `flagos run`."""
import os
import subprocess


def run(cmd, env=None):
    """cmd with the environment plus env, its output captured as text."""
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run(cmd, env=e, capture_output=True, text=True)


def run_bundle(flagos, bundle, kind, dev, env, out, args):
    """`flagos run BUNDLE --device DEV -o OUT ARGS` with FLAGOS_TRACE=1 and env; the
    run and its label ("KIND on DEV NAME=VALUE ..."). A run that failed is printed
    as FAIL with the end of its stderr; the caller counts it."""
    r = run([flagos, "run", bundle, "--device", dev, "-o", out] + args, dict(env, FLAGOS_TRACE="1"))
    label = "%s on %s%s" % (kind, dev, "".join(" %s=%s" % kv for kv in env.items()))
    if r.returncode != 0:
        print("FAIL %s: exit %d\n%s" % (label, r.returncode, r.stderr[-2000:]))
    return r, label


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
