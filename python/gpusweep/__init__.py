"""gpu-sweep from Python: run a sweep, read a finished run back, evaluate its networks.

    import gpusweep
    res = gpusweep.sweep(arch=["mlp", "glu"], widths=[4, 8], points=2000, target="sin4",
                         out="runs/nb")                 # the results table
    run = gpusweep.load("runs/nb")                      # results, summary, parameters
    net = run.network(arch="glu", width=8, seed=0)
    y = net(np.linspace(-1, 1, 101))                    # y(x) by the C++ network code

sweep() takes every option of gpu-sweep's main command as a keyword: --data-seed is
data_seed=..., lists become comma-separated values, flags (overwrite, quiet, no_plots) take
True or False, and on/off options take True or False too. It parses them with the command
line's own parser and runs the command line's own sweep, so the run directory is the one
`gpu-sweep` with the same options writes, and bad options raise ValueError with the message
the command line prints. Ctrl-C stops the sweep at its next Newton step (the finished
networks are saved; sweep(resume=dir) continues) and raises KeyboardInterrupt.

Tables (results.csv, params_index.csv) come as a pandas DataFrame when pandas can be
imported, else as a dict of numpy arrays (Table); either has attrs["dir"], the run's
directory.
"""

import json
import os
import sys

import numpy as np

from . import _gpusweep as _ext

__version__ = _ext.version
commit = _ext.commit

__all__ = ["sweep", "load", "Run", "Network", "Table"]


class Table(dict):
    """A table as a dict of numpy arrays, one per column in the file's order (text columns
    hold Python strings). attrs["dir"]: the run's directory."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.attrs = {}

    @property
    def columns(self):
        return list(self.keys())

    @property
    def rows(self):
        return len(next(iter(self.values()))) if self else 0

    def __repr__(self):
        return "Table(%d rows: %s)" % (self.rows, ", ".join(self.keys()))


def _table(pairs, directory):
    """A table from the extension's (column, values) pairs: a DataFrame if pandas imports."""
    cols = {}
    for name, values in pairs:
        cols[name] = values if isinstance(values, np.ndarray) else np.array(values, dtype=object)
    try:
        import pandas
    except ImportError:
        pandas = None
    if pandas is not None:
        t = pandas.DataFrame(cols)
    else:
        t = Table(cols)
    t.attrs["dir"] = directory
    return t


def _value_text(v):
    if isinstance(v, (bool, np.bool_)):
        return "on" if v else "off"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        return repr(float(v))
    return os.fspath(v) if isinstance(v, os.PathLike) else str(v)


def _arguments(options):
    """The command line of gpu-sweep's main command for these keyword options."""
    flags = set(_ext.sweep_flags())
    args = []
    for key, value in options.items():
        if value is None:
            continue
        opt = _ext.option_of(key)
        if opt in flags:
            if not isinstance(value, (bool, np.bool_)):
                raise TypeError("%s: a flag, True or False, not %r" % (key, value))
            if value:
                args.append(opt)
            continue
        if isinstance(value, (list, tuple, range, np.ndarray)):
            text = ",".join(_value_text(v) for v in value)
        else:
            text = _value_text(value)
        # --key=value: a value that starts with '-' (an expression) stays a value.
        args.append("%s=%s" % (opt, text))
    return args


def sweep(**options):
    """Runs a sweep in this process, as `gpu-sweep` with the same options does, and returns
    its results table (results.csv's columns; attrs["dir"] is the run's directory, the
    default runs/<timestamp> as in the command line when out= is not given).

    Progress and the slope table go to stderr and stdout as in the command line (quiet=True
    silences them). Bad options raise ValueError with the command line's message; Ctrl-C
    raises KeyboardInterrupt once the sweep has stopped and saved what it finished.
    """
    args = _arguments(options)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, ValueError, OSError):
            pass
    directory = _ext.run_sweep(args)
    return load(directory).results


class Network:
    """One network: y(x) = d0 + sum_i s(G_i x + g_i) (U_i x + u_i) ... q_i(x) as network.h
    defines it (q_i = D_i for gated:K, a polynomial for gpoly:K), for the parameter vector
    `params` in its layout (blocks G, g | U, u | ... | D, d0).

    arch: an --arch name (mlp, glu, gqu, gated:K, gpoly:K, or a construction such as
    glu-construct or mlp-paper, which are relu networks); activation: relu, gelu, silu or
    sigmoid; d: the input dimension. The width follows from len(params). Calling it evaluates
    the C++ network code.
    """

    def __init__(self, arch, params, activation="relu", d=1, **keys):
        theta = np.array(params, dtype=np.float64).reshape(-1)
        theta.setflags(write=False)
        self.arch, self.activation, self.d, self.width = _ext.network_info(arch, activation, int(d), theta.size)
        self.params = theta
        self.target = keys.pop("target", None)
        self.seed = keys.pop("seed", None)
        if keys:
            raise TypeError("Network: unexpected keyword %s" % ", ".join(sorted(keys)))

    def __call__(self, x):
        """y at x: for d = 1 any array of points (y has its shape); otherwise an array whose
        last axis has length d (y has the other axes)."""
        x = np.asarray(x, dtype=np.float64)
        if self.d == 1:
            shape = x.shape
            rows = x.reshape(-1, 1)
        else:
            if x.ndim == 0 or x.shape[-1] != self.d:
                raise ValueError("x: want points of %d inputs along the last axis, not shape %s" % (self.d, x.shape))
            shape = x.shape[:-1]
            rows = x.reshape(-1, self.d)
        return _ext.evaluate(self.arch, self.activation, self.d, self.params, rows).reshape(shape)

    def __repr__(self):
        extra = "".join(", %s=%r" % (k, getattr(self, k)) for k in ("target", "seed") if getattr(self, k) is not None)
        return "Network(%s, %s, d=%d, width=%d, P=%d%s)" % (
            self.arch, self.activation, self.d, self.width, self.params.size, extra)


class Run:
    """A finished run's directory: results (results.csv), summary (summary.json as a dict),
    index (params_index.csv) and the saved parameter vectors (params.bin)."""

    def __init__(self, directory):
        self.dir = os.fspath(directory)
        if not os.path.isdir(self.dir):
            raise ValueError("%s: not a directory" % self.dir)
        self.results = _table(_ext.read_results(os.path.join(self.dir, "results.csv")), self.dir)
        path = os.path.join(self.dir, "summary.json")
        try:
            with open(path, encoding="utf-8") as f:
                self.summary = json.load(f)
        except OSError as e:
            raise ValueError("%s: cannot read it (%s)" % (path, e.strerror)) from None
        except json.JSONDecodeError as e:
            raise ValueError("%s: not valid JSON (%s)" % (path, e)) from None
        self._index = _ext.read_params_index(self.dir)
        self.index = _table(self._index, self.dir)
        self._rows = {name: list(values) for name, values in self._index}
        self._params = None

    def __len__(self):
        return len(self._rows["offset"])

    def parameters(self, i):
        """Network i's parameter vector (row i of results.csv and params_index.csv)."""
        i = self._row(i)
        return _ext.read_params(self.dir, int(self._rows["offset"][i]), int(self._rows["count"][i]))

    @property
    def params(self):
        """Every network's parameter vector, in the order of results.csv."""
        if self._params is None:
            self._params = [self.parameters(i) for i in range(len(self))]
        return self._params

    def _row(self, i):
        n = len(self)
        if not -n <= i < n:
            raise IndexError("%s: network %d of %d" % (self.dir, i, n))
        return i % n

    def find(self, arch=None, width=None, seed=None, activation=None, target=None):
        """The rows whose keys equal the ones given."""
        want = {"arch": arch, "width": width, "seed": seed, "activation": activation, "target": target}
        rows = []
        for i in range(len(self)):
            if all(v is None or self._rows[k][i] == v for k, v in want.items()):
                rows.append(i)
        return rows

    def network(self, i=None, *, arch=None, width=None, seed=None, activation=None, target=None):
        """Network i, or the one network with the keys given (arch, width, seed, activation,
        target), with its saved parameters."""
        if i is None:
            rows = self.find(arch, width, seed, activation, target)
            if len(rows) != 1:
                keys = ", ".join("%s=%r" % kv for kv in
                                 (("arch", arch), ("width", width), ("seed", seed),
                                  ("activation", activation), ("target", target)) if kv[1] is not None)
                raise ValueError("%s: %d networks have %s; give the keys that pick one" %
                                 (self.dir, len(rows), keys or "no keys"))
            i = rows[0]
        i = self._row(i)
        r = {k: v[i] for k, v in self._rows.items()}
        return Network(r["arch"], self.parameters(i), activation=r["activation"], d=int(r["d"]),
                       target=r["target"], seed=int(r["seed"]))

    def __repr__(self):
        return "Run(%r, %d networks)" % (self.dir, len(self))


def load(directory):
    """Reads a finished run's directory (see Run)."""
    return Run(directory)
