"""Tests of the Python module gpusweep against the gpu-sweep binary.

    PYTHONPATH=build/python python3 python/tests/test_module.py build/gpu-sweep build/python/tmp

Each test_* function runs in turn; any failure exits 1.
"""

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import traceback

import numpy as np

import gpusweep

BIN = os.path.abspath(sys.argv[1])
TMP = os.path.abspath(sys.argv[2])

# Trained archs of both families, a construction, two targets (one an expression with commas and a leading
# minus), two seeds: every column of results.csv takes more than one value.
OPTIONS = dict(arch=["mlp", "glu", "gpoly:1", "glu-construct"], widths=[3, 6], seeds=2, points=600,
               target=["sin4", "-exp(-x^2)*sin(5*x)"], schedule="D,U,G,ALL*20", threads=2,
               no_plots=True, quiet=True)
CLI_ARGS = ["--arch", "mlp,glu,gpoly:1,glu-construct", "--widths", "3,6", "--seeds", "2", "--points", "600",
            "--target=sin4,-exp(-x^2)*sin(5*x)", "--schedule", "D,U,G,ALL*20", "--threads", "2",
            "--no-plots", "-q"]
TEXT = ("arch", "activation", "target", "status", "reason")


def tmp(name):
    path = os.path.join(TMP, name)
    shutil.rmtree(path, ignore_errors=True)
    return path


def cli(*args):
    return subprocess.run([BIN, *args], capture_output=True, text=True, timeout=120)


def columns(table):
    """A results table (a Table or a DataFrame) as {column: numpy array}."""
    return {k: np.asarray(table[k]) for k in table.keys()}


def csv_columns(path):
    """results.csv read with Python's csv module, independently of the extension."""
    import csv
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return {k: [r[k] for r in rows] for k in rows[0]}


def assert_same_results(got, want, what):
    assert list(got) == list(want), "%s: columns %s, want %s" % (what, list(got), list(want))
    for k in want:
        if k == "seconds":  # a measurement
            continue
        g, w = got[k], want[k]
        assert len(g) == len(w), "%s: %s has %d rows, want %d" % (what, k, len(g), len(w))
        if k in TEXT:
            bad = [i for i in range(len(w)) if g[i] != w[i]]
        else:
            gv, wv = np.asarray(g, dtype=float), np.asarray(w, dtype=float)
            bad = [i for i in range(len(w)) if not (gv[i] == wv[i] or (np.isnan(gv[i]) and np.isnan(wv[i])))]
        assert not bad, "%s: column %s differs at rows %s: %s vs %s" % (
            what, k, bad[:5], [g[i] for i in bad[:5]], [w[i] for i in bad[:5]])


def test_sweep_equals_cli():
    """The module's sweep and gpu-sweep with the same options write the same results and
    parameters, and the module returns them."""
    out_py, out_cli = tmp("py"), tmp("cli")
    res = gpusweep.sweep(out=out_py, **OPTIONS)
    r = cli(*CLI_ARGS, "--out", out_cli)
    assert r.returncode == 0, r.stderr
    assert res.attrs["dir"] == out_py
    want = csv_columns(os.path.join(out_cli, "results.csv"))
    assert len(want["arch"]) == 4 * 2 * 2 * 2 - 2 * 2, "rows: %d" % len(want["arch"])  # a construction has one seed
    assert_same_results(columns(res), want, "sweep() against gpu-sweep's results.csv")
    assert_same_results(csv_columns(os.path.join(out_py, "results.csv")), want, "the two results.csv")
    with open(os.path.join(out_py, "params.bin"), "rb") as a, open(os.path.join(out_cli, "params.bin"), "rb") as b:
        assert a.read() == b.read(), "params.bin differs"
    run = gpusweep.load(out_py)
    assert run.summary["config"]["arch"] == "mlp,glu,gpoly:1,glu-construct", run.summary["config"]
    assert run.summary["config"]["target"] == "sin4,-exp(-x^2)*sin(5*x)", run.summary["config"]


def test_results_types():
    res = columns(gpusweep.load(os.path.join(TMP, "py")).results)
    for k in ("width", "params", "effective_params", "seed", "newton_steps"):
        assert res[k].dtype == np.int64, (k, res[k].dtype)
    for k in ("train_rmse", "test_rmse", "scaled_gradient", "last_rel_decrease", "seconds"):
        assert res[k].dtype == np.float64, (k, res[k].dtype)
    for k in TEXT:
        assert all(isinstance(v, str) for v in res[k]), k
    assert (res["test_rmse"] > 0).all() and (res["test_rmse"] < 1).all(), res["test_rmse"]
    # An RMSE column of whole numbers (exact fits) stays float64.
    import csv
    d = tmp("zeros")
    shutil.copytree(os.path.join(TMP, "py"), d)
    with open(os.path.join(d, "results.csv"), newline="") as f:
        rows = list(csv.reader(f))
    col = rows[0].index("test_rmse")
    for r in rows[1:]:
        r[col] = "0"
    with open(os.path.join(d, "results.csv"), "w", newline="") as f:
        csv.writer(f, lineterminator="\n").writerows(rows)
    z = columns(gpusweep.load(d).results)
    assert z["test_rmse"].dtype == np.float64 and not z["test_rmse"].any(), z["test_rmse"]
    assert np.array_equal(z["train_rmse"], res["train_rmse"])


def test_table_kinds():
    """A DataFrame with pandas, a dict of numpy arrays without it."""
    d = os.path.join(TMP, "py")
    saved = sys.modules.get("pandas")
    sys.modules["pandas"] = None  # makes `import pandas` fail
    try:
        t = gpusweep.load(d).results
    finally:
        if saved is None:
            del sys.modules["pandas"]
        else:
            sys.modules["pandas"] = saved
    assert type(t) is gpusweep.Table and isinstance(t, dict), type(t)
    assert all(isinstance(v, np.ndarray) for v in t.values())
    assert t.attrs["dir"] == d and t.rows == 28
    try:
        import pandas
    except ImportError:
        print("  (pandas is not installed: the DataFrame is not tested)")
        return
    df = gpusweep.load(d).results
    assert isinstance(df, pandas.DataFrame), type(df)
    assert df.attrs["dir"] == d
    assert_same_results({k: df[k].to_numpy() for k in df.columns}, t, "DataFrame against Table")


def test_load_round_trip():
    d = os.path.join(TMP, "py")
    run = gpusweep.load(d)
    res = columns(run.results)
    index = columns(run.index)
    assert len(run) == len(res["arch"]) == len(run.params)
    for k in ("arch", "activation", "target", "width", "seed"):
        assert list(index[k]) == list(res[k]), k
    assert [p.size for p in run.params] == list(res["params"]), "parameter counts"
    raw = np.fromfile(os.path.join(d, "params.bin"), "<f8")
    assert np.array_equal(np.concatenate(run.params), raw), "params differ from params.bin"
    assert all(np.isfinite(p).all() for p in run.params)
    counts = run.summary["networks"]
    assert sum(counts[k] for k in ("converged", "max_steps", "stalled", "failed")) == len(run), counts
    assert sorted({(g["arch"], g["target"]) for g in run.summary["fits"]}) == sorted(
        {(a, t) for a, t in zip(res["arch"], res["target"])}), run.summary["fits"]
    assert run.summary["config"]["widths"] == "3,6" and run.summary["config"]["seeds"] == 2, run.summary["config"]


def test_network_matches_test_rmse():
    """y(x) on the run's own 1D test grid reproduces each network's test RMSE."""
    run = gpusweep.load(os.path.join(TMP, "py"))
    res = columns(run.results)
    x = -1.0 + 2.0 * np.arange(600) / 599  # the 1D test grid of data.cpp
    f = {"sin4": np.sin(4 * x), "-exp(-x^2)*sin(5*x)": -np.exp(-x ** 2) * np.sin(5 * x)}
    for i in range(len(run)):
        net = run.network(i)
        assert (net.arch, net.width, net.seed, net.target) == (res["arch"][i], res["width"][i], res["seed"][i],
                                                               res["target"][i])
        rmse = np.sqrt(np.mean((net(x) - f[net.target]) ** 2))
        want = res["test_rmse"][i]
        assert abs(rmse - want) <= 1e-12 + 1e-9 * want, "network %d (%r): RMSE %.17g, results.csv %.17g" % (
            i, net, rmse, want)


def test_network_independent_evaluation():
    """The glu's y(x) against numpy's evaluation of the layout in the README."""
    run = gpusweep.load(os.path.join(TMP, "py"))
    net = run.network(arch="glu", width=6, seed=1, target="sin4")
    th, n = net.params, net.width
    x = np.linspace(-1.3, 1.3, 1001)
    W, b = th[:4 * n].reshape(2, 2, n).transpose(1, 0, 2)
    a = W[..., None] * x + b[..., None]
    y = th[-1] + th[4 * n:-1] @ (np.maximum(a[0], 0) * a[1])
    got = net(x)
    assert got.shape == x.shape
    err = np.abs(got - y)
    assert (err <= 1e-13 + 1e-12 * np.abs(y)).all(), "max error %g" % err.max()
    # A Network from the same vector, and shapes of x.
    same = gpusweep.Network("glu", net.params)
    assert same.width == 6 and np.array_equal(same(x), got)
    assert np.array_equal(same(x.reshape(7, 143)), got.reshape(7, 143))
    assert np.ndim(same(0.5)) == 0 and same(0.5) == same(np.array([0.5]))[0]


def test_network_2d():
    """A 2D run: y(x) on its test grid (m x m, x fastest) reproduces the test RMSE."""
    d = tmp("py2d")
    res = columns(gpusweep.sweep(arch="glu,gpoly:2", widths=[4], points=400, target="x2_y2",
                                 schedule="D,U,G,ALL*10", out=d, no_plots=True, quiet=True))
    run = gpusweep.load(d)
    g = -1.0 + 2.0 * np.arange(20) / 19
    X, Y = np.meshgrid(g, g)  # rows in y, x fastest
    pts = np.stack([X, Y], axis=-1)
    for i in range(len(run)):
        net = run.network(i)
        assert net.d == 2 and net.arch == res["arch"][i], (net, res["arch"][i])
        y = net(pts)
        assert y.shape == (20, 20)
        rmse = np.sqrt(np.mean((y - X ** 2 * Y ** 2) ** 2))
        want = res["test_rmse"][i]
        assert abs(rmse - want) <= 1e-12 + 1e-9 * want, (net, rmse, want)
    try:
        net(np.zeros((5, 3)))
    except ValueError as e:
        assert "2 inputs" in str(e), e
    else:
        raise AssertionError("x with 3 inputs for a 2-input network was accepted")


def cli_error(*args):
    r = cli(*args)
    assert r.returncode == 2, (args, r.returncode, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gpu-sweep: error: "), r.stderr
    return lines[0][len("gpu-sweep: error: "):]


def test_bad_options_raise():
    """A bad option raises ValueError with the message gpu-sweep prints, and writes nothing."""
    d = tmp("bad")
    cases = [
        (dict(seeds=0), ["--seeds", "0"]),
        (dict(init="bogus"), ["--init", "bogus"]),
        (dict(widths=[0, 4]), ["--widths", "0,4"]),
        (dict(arch="glu,nope"), ["--arch", "glu,nope"]),
        (dict(target="sin(x"), ["--target", "sin(x"]),
        (dict(fit_min_width=8, fit_max_width=4), ["--fit-min-width", "8", "--fit-max-width", "4"]),
        (dict(resume=os.path.join(TMP, "no-such-run")), ["--resume", os.path.join(TMP, "no-such-run")]),
    ]
    for kwargs, args in cases:
        want = cli_error(*args, "--out", d, "--no-plots")
        try:
            gpusweep.sweep(out=d, no_plots=True, **kwargs)
        except ValueError as e:
            assert str(e) == want, "%s: %r, the CLI says %r" % (kwargs, str(e), want)
        else:
            raise AssertionError("%s: no exception" % kwargs)
        assert not os.path.exists(d), "%s: %s was made" % (kwargs, d)
    # Small sweeps, should one of them run.
    small = dict(arch="mlp", widths=[2], points=50, out=d, no_plots=True)
    for kwargs, needle in [(dict(no_such_option=1), "--no-such-option"), (dict(help=True), "--help")]:
        try:
            gpusweep.sweep(**small, **kwargs)
        except ValueError as e:
            assert needle in str(e) and "\n" not in str(e), e
        else:
            raise AssertionError("%s: no exception" % kwargs)
    try:
        gpusweep.sweep(**small, overwrite="yes")
    except TypeError as e:
        assert "overwrite" in str(e), e
    else:
        raise AssertionError("overwrite='yes' was accepted")
    for bad in [dict(arch="spline2", params=[1.0, 2.0, 3.0]), dict(arch="glu", params=np.zeros(7)),
                dict(arch="glu", params=np.zeros(11), activation="tanh")]:
        try:
            gpusweep.Network(**bad)
        except ValueError as e:
            assert "\n" not in str(e), e
        else:
            raise AssertionError("Network(%s) was accepted" % bad)


def test_load_errors():
    for d, needle in [(os.path.join(TMP, "no-such-run"), "not a directory"), (tmp("empty"), "results.csv")]:
        if needle == "results.csv":
            os.makedirs(d)
        try:
            gpusweep.load(d)
        except ValueError as e:
            assert needle in str(e), e
        else:
            raise AssertionError("load(%s) did not raise" % d)


def test_readme_example():
    """The README's notebook session runs as written."""
    readme = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "README.md")
    with open(readme, encoding="utf-8") as f:
        text = f.read()
    section = text[text.index("## From Python"):]
    code = section[section.index("```python\n") + len("```python\n"):section.index("```\n", section.index("```python"))]
    d = tmp("readme")
    os.makedirs(d)
    r = subprocess.run([sys.executable, "-c", code], cwd=d, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    last = r.stdout.strip().splitlines()[-1]
    assert last.startswith("Network(glu, relu, d=1, width=16"), last
    assert float(last.split()[-1]) < 1e-3, last


CTRL_C = textwrap.dedent("""
    import os, signal, sys, time
    import gpusweep
    try:
        gpusweep.sweep(arch="mlp,glu", widths="1:60", seeds=2, points=4000, out=sys.argv[1], no_plots=True)
        print("FINISHED", flush=True)
    except KeyboardInterrupt as e:
        print("INTERRUPTED", e, flush=True)
    try:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(5)
        print("NO KeyboardInterrupt", flush=True)
    except KeyboardInterrupt:
        print("PYTHON HANDLER", flush=True)
    r = gpusweep.sweep(arch="mlp", widths=[2], points=200, out=sys.argv[2], no_plots=True, quiet=True)
    print("SECOND", len(r["width"]), flush=True)
""")


def test_ctrl_c():
    """Ctrl-C stops the sweep with its finished networks saved and raises KeyboardInterrupt;
    Python's handler is back afterwards, and the next sweep runs to its end."""
    d1, d2 = tmp("ctrl-c"), tmp("after-ctrl-c")
    p = subprocess.Popen([sys.executable, "-c", CTRL_C, d1, d2], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    line = p.stdout.readline()
    assert "networks on" in line, line + p.stderr.read()
    time.sleep(0.5)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=120)
    out = line + out
    assert p.returncode == 0, (p.returncode, out, err)
    assert "INTERRUPTED gpu-sweep interrupted" in out and "resume=" in out, out
    assert "PYTHON HANDLER" in out, out
    assert "SECOND 1" in out, out
    assert "gpu-sweep: interrupted:" in err, err
    assert os.path.exists(os.path.join(d1, "manifest.json")) and not os.path.exists(os.path.join(d1, "results.csv"))


def main():
    shutil.rmtree(TMP, ignore_errors=True)
    os.makedirs(TMP)
    failed = 0
    for name, fn in [(k, v) for k, v in globals().items() if k.startswith("test_") and callable(v)]:
        t0 = time.time()
        try:
            fn()
            print("ok    %-40s %.2f s" % (name, time.time() - t0), flush=True)
        except Exception:
            failed += 1
            print("FAIL  %s" % name, flush=True)
            traceback.print_exc()
    print("%d failed" % failed if failed else "all passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
