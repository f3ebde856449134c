"""invlab bench: config errors, a run on the tiny CI config, resume, interruption, sharding, plots."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from invlab import cli
from invlab.bench import load_config, main, parse_config, plot_table, read_table, run_bench, same_table
from invlab.bench.run import part_path

TINY = Path(__file__).with_name("bench_tiny.toml")
ROOT = Path(__file__).resolve().parent.parent

GOOD = """
[grid]
models = ["gmm-digits"]
steps = [4]
guidance = [1.0]
[[methods]]
method = "naive"
"""


def _cfg(tmp_path, text=None, name="tiny.csv"):
    cfg = load_config(TINY) if text is None else parse_config(text, tmp_path)
    cfg.output = tmp_path / name
    return cfg


@pytest.mark.parametrize("text, match", [
    (GOOD.replace('"gmm-digits"', '"gmm-digit"'), r"unknown model 'gmm-digit'; use one of \['digits'"),
    (GOOD.replace('"naive"', '"nave"'), r"unknown method 'nave'; use one of \["),
    (GOOD + '\n', None),
    (GOOD.replace("[grid]", '[grid]\nmetrics = ["mse"]'), r"unknown metric 'mse'; use any of \['noise_nmse'"),
    (GOOD.replace("steps = [4]\n", ""), r"\[grid\]: missing key 'steps'; add e.g. steps = \[10, 20\]"),
    (GOOD.split("[[methods]]")[0], r"no methods; add one table per method"),
    ("[bench]\nname = 'x'\n", r"missing table \[grid\]"),
    (GOOD.replace('method = "naive"', 'method = "naive"\nbudget = [2]'), "has no budget knob; remove 'budget'"),
    (GOOD.replace('method = "naive"', 'method = "exact"\noptions = { max_iters = 3 }'), "max_iters"),
    (GOOD.replace('method = "naive"', 'method = "newton"\nbudget = [2]'), "cannot spend 2 NFE per step"),
    (GOOD.replace("[grid]", "[gird]\n[grid]"), r"unknown key\(s\) \['gird'\]"),
    (GOOD.replace("guidance = [1.0]", 'guidance = ["high"]'), "expected float values"),
    (GOOD + '[images]\nsource = "web"\n', r'source must be "sampled"'),
    (GOOD.replace("[grid]", '[grid]\nsolvers = ["euler"]'), r"unknown solver 'euler'; use one of"),
    (GOOD + "[[methods]]\nmethod = 'naive'\n", r"labels \['naive'\] appear twice"),
    ("[grid\n", "not valid TOML"),
])
def test_config_errors_name_the_fix(tmp_path, text, match):
    if match is None:   # the base config parses
        cfg = parse_config(text, tmp_path)
        assert [r.label for r in cfg.rows()] == ["naive"]
        return
    with pytest.raises(ValueError, match=match):
        parse_config(text, tmp_path)


def test_cli_dispatches_and_reports_bad_configs(tmp_path, capsys):
    assert cli.main(["--help"]) == 0 and "bench" in capsys.readouterr().out
    assert cli.main(["nope"]) == 2 and "unknown command 'nope'" in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_text(GOOD.replace('"naive"', '"nave"'))
    assert cli.main(["bench", str(bad)]) == 2 and "unknown method 'nave'" in capsys.readouterr().err


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    """The tiny config run once, single process, uninterrupted: (config, summary, table)."""
    cfg = _cfg(tmp_path_factory.mktemp("single"))
    summary = run_bench(cfg, show_progress=False)
    return cfg, summary, read_table(cfg.output)


def test_a_run_writes_one_tidy_row_per_setting(single):
    cfg, summary, rows = single
    assert summary["computed"] == summary["rows"] == len(rows) == 12 and summary["skipped"] == 0
    assert [r["index"] for r in rows] == list(range(12)) and len({r["key"] for r in rows}) == 12
    for r in rows:
        assert r["error"] is None and r["model"] == "gmm-digits" and r["dtype"] == "float64"
        assert r["nfe"] > 0 and r["seconds"] > 0 and r["peak_rss_mb"] > 0
        assert 0 < r["image_nmse"] < 1 and 0 < r["noise_nmse"] < 2 and r["psnr"] > 0
        assert r["torch_version"] and r["invlab_version"] and r["config_hash"] == cfg.hash
        if r["method"] == "naive":
            assert r["nfe"] == 4 and r["converged"] is None
        else:
            assert r["nfe"] <= r["budget_nfe"] + 1 and r["solved_steps"] == 4 and isinstance(r["converged"], bool)
    assert "ssim" not in rows[0]                                      # only the metrics asked for
    assert {r["label"] for r in rows} == {"naive", "exact 3x", "fixed-point 3x"}
    exact = [r for r in rows if r["method"] == "exact"]
    assert exact[0]["options"] == {"max_iter": 1}                     # the matched-budget rule of zoo.KNOBS
    prov = json.loads(cfg.output.with_suffix(".provenance.json").read_text())
    assert prov["rows_in_table"] == 12 and prov["world_size"] == 1 and prov["config_text"] == TINY.read_text()


def test_a_second_run_does_no_work(single, tmp_path):
    cfg, _, rows = single
    again = run_bench(cfg, show_progress=False)
    assert again["computed"] == 0 and again["skipped"] == 12
    assert read_table(cfg.output) == rows


def test_an_interrupted_run_keeps_its_finished_rows(single, tmp_path):
    cfg = _cfg(tmp_path)
    seen = []

    def stop_after_three(rec):
        seen.append(rec["key"])
        if len(seen) == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_bench(cfg, show_progress=False, on_row=stop_after_three)
    assert [r["key"] for r in read_table(cfg.output)] == seen
    with open(cfg.output, "a") as f:   # a process killed while writing its fourth row
        f.write("deadbeef,3,gmm-digits,ddim,4")
    rest = run_bench(cfg, show_progress=False)
    assert rest["computed"] == 9 and rest["skipped"] == 3
    assert same_table(read_table(cfg.output), single[2]) == []       # same numbers, same order


def test_a_changed_config_computes_only_the_new_rows(single, tmp_path):
    cfg = _cfg(tmp_path)
    cfg.output.write_text(single[0].output.read_text())
    more = parse_config(TINY.read_text().replace("guidance = [1.0, 3.0]", "guidance = [1.0, 3.0, 2.0]"), tmp_path)
    more.output = cfg.output
    out = run_bench(more, show_progress=False)
    assert out["computed"] == 6 and out["skipped"] == 12 and len(read_table(cfg.output)) == 18


def test_real_images_from_a_folder(tmp_path):
    import numpy as np
    from PIL import Image

    (tmp_path / "imgs").mkdir()
    rng = np.random.default_rng(0)
    for name in ("3_a.png", "7_b.png"):
        Image.fromarray(rng.integers(0, 255, (20, 24), dtype=np.uint8)).save(tmp_path / "imgs" / name)
    text = GOOD.replace("guidance = [1.0]", "guidance = [3.0]") + \
        '[images]\nsource = "folder"\nfolder = "imgs"\ncondition_from_name = true\n'
    cfg = parse_config(text, tmp_path)
    cfg.output = tmp_path / "real.csv"
    run_bench(cfg, show_progress=False)
    (row,) = read_table(cfg.output)
    assert row["source"] == "real" and row["images"] == ["3_a.png", "7_b.png"] and row["batch"] == 2
    assert row["error"] is None and row["noise_nmse"] != row["noise_nmse"] and row["image_nmse"] > 0  # NaN: no truth
    with pytest.raises(ValueError, match=r"conditions name files not in the folder: \['c.png'\]"):
        parse_config(text + 'conditions = { "c.png" = 1 }\n', tmp_path)


def test_plot_writes_the_pareto_and_guidance_figures(single, tmp_path):
    paths = plot_table(single[0].output, tmp_path)
    assert [p.name for p in paths] == ["tiny_pareto.png", "tiny_guidance.png"]
    assert all(p.stat().st_size > 5000 for p in paths)
    assert main(["plot", str(single[0].output), "--out", str(tmp_path / "cli"), "--metric", "noise_nmse"]) == 0
    assert (tmp_path / "cli" / "tiny_pareto.png").exists()


def test_report_writes_winners_and_every_entry(single, tmp_path):
    assert main(["report", str(single[0].output), "--out", str(tmp_path / "r.md")]) == 0
    md = (tmp_path / "r.md").read_text()
    assert "## Winners by budget (image_nmse)" in md and "| gmm-digits | ddim | 4 | 3 |" in md
    assert "| model | solver | steps | w | naive | exact 3x | fixed-point 3x |" in md and "12 rows" in md


@pytest.mark.slow
def test_sharded_over_two_processes_equals_the_single_table(single, tmp_path):
    # accelerate's launcher starts N processes on a CPU-only machine through its torchrun path
    # (--multi_gpu); invlab.bench joins them over gloo (PartialState(cpu=True))
    import socket

    with socket.socket() as sock:   # a free port for the process group's rendezvous
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    out = tmp_path / "sharded.csv"
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "--main_process_port", str(port), "-m", "invlab.bench", str(TINY), "--output", str(out), "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=150)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "2 process(es)" in res.stdout and "this process computed 6" in res.stdout
    sharded = read_table(out)
    assert [r["key"] for r in sharded] == [r["key"] for r in single[2]]         # no duplicate, no lost row
    assert same_table(sharded, single[2], tol=0.0) == []                      # bit-identical numbers
    assert not part_path(out, 0, 2).exists() and not part_path(out, 1, 2).exists()
    assert json.loads(out.with_suffix(".provenance.json").read_text())["world_size"] == 2
