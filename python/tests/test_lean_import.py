"""Importing gpusweep loads no CUDA library; a sweep that asks for a GPU loads the CUDA plugin
beside libgpusweep_core.so into this process.

    PYTHONPATH=build/python python3 python/tests/test_lean_import.py yes|no

The argument says whether the build has the CUDA plugin. Exits 1 on a failure.
"""

import sys
import tempfile

CUDA_LIBRARIES = ("libcudart", "libcublas", "libcusolver", "libcusparse", "libnvJitLink", "libgpusweep_cuda")


def loaded():
    """The file names of the shared objects mapped into this process."""
    with open("/proc/self/maps") as f:
        return {line.split()[-1].rsplit("/", 1)[-1] for line in f if "/" in line}


def cuda_loaded():
    return sorted(name for name in loaded() for lib in CUDA_LIBRARIES if name.startswith(lib))


def main():
    have_cuda = sys.argv[1] == "yes"
    import gpusweep
    assert any(name.startswith("libgpusweep_core") for name in loaded()), sorted(loaded())
    assert cuda_loaded() == [], "import gpusweep loaded %s" % cuda_loaded()
    with tempfile.TemporaryDirectory() as tmp:
        gpusweep.sweep(widths=[2], points=20, schedule="D", device="cpu", no_plots=True, quiet=True,
                       out=tmp + "/cpu")
        assert cuda_loaded() == [], "a CPU sweep loaded %s" % cuda_loaded()
        if not have_cuda:
            return
        # Without a GPU the plugin's own CUDA runtime says so, which proves that it loaded and
        # resolved against the module's core; with one the sweep runs.
        try:
            gpusweep.sweep(widths=[2], points=20, schedule="D", device="cuda", no_plots=True, quiet=True,
                           out=tmp + "/cuda")
        except ValueError as e:
            assert "--device cuda: no CUDA device is visible" in str(e), str(e)
        assert "libgpusweep_cuda.so" in loaded(), sorted(loaded())


if __name__ == "__main__":
    main()
    print("ok")
