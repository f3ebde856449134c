"""``invlab invert`` / ``invlab diagnose``: the installed console script on PNG files, in subprocesses.

The happy paths run the real entry point (as a user would after ``pip install``); the bad-input
cases run once through the script (exit status 2, the reason on stderr) and otherwise in-process
through ``main_invert`` (same code, no interpreter start-up).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from invlab.invert_cli import load_image, main_invert, save_png


def _invlab() -> list[str]:
    """The console script next to this interpreter (what ``pip install`` wrote), else ``-m invlab.cli``."""
    script = Path(sys.executable).parent / ("invlab.exe" if os.name == "nt" else "invlab")
    return [str(script)] if script.exists() else [sys.executable, "-m", "invlab.cli"]


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    return subprocess.run(_invlab() + args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def pngs(tmp_path_factory) -> dict[str, Path]:
    """A real digit (scikit-learn's bundled digits) at 16x16 and 32x32, an RGB copy, and a non-image."""
    from invlab.data import digits_images

    d = tmp_path_factory.mktemp("pngs")
    x16, y = digits_images(16, split="val")
    x32, _ = digits_images(32, split="val")
    save_png(x16[:1], d / "digit16.png")
    save_png(x32[:1], d / "digit32.png")
    Image.open(d / "digit16.png").convert("RGB").save(d / "digit16_rgb.png")
    (d / "notes.png").write_text("this is not a picture")
    return {"16": d / "digit16.png", "32": d / "digit32.png", "rgb": d / "digit16_rgb.png",
            "bad": d / "notes.png", "label": int(y[0])}


def test_entry_point_is_declared():
    from importlib.metadata import entry_points

    eps = {ep.name: ep.value for ep in entry_points(group="console_scripts")}
    assert eps.get("invlab") == "invlab.cli:main"


def test_invert_writes_every_output(pngs, tmp_path):
    """Exact inversion of a 16x16 digit: all five files, a near-perfect round trip, and the
    saved noise samples back to the saved reconstruction."""
    out = tmp_path / "out"
    r = _run(["invert", str(pngs["16"]), "--model", "digits", "--cond", str(pngs["label"]), "--method", "exact",
              "--steps", "10", "--out", str(out)], tmp_path)
    assert r.returncode == 0, r.stderr
    for name in ("input.png", "reconstruction.png", "noise.safetensors", "report.png", "report.json"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert "PSNR" in r.stdout and "%" in r.stderr                       # the summary line; tqdm's bars
    report = json.loads((out / "report.json").read_text())
    assert report["schema"] == "invlab.diagnose/1"
    s = report["summary"]
    assert (s["model"], s["method"], s["steps"]) == ("digits", "exact", 10)
    assert s["psnr"] > 40                     # exact inversion: the round trip is solver-tolerance tight
    assert s["max_forward_residual"] < 1e-3

    from safetensors.torch import load_file

    import invlab

    z = load_file(str(out / "noise.safetensors"))["z_T"]
    assert z.shape == (1, 1, 16, 16) and torch.isfinite(z).all()
    model = invlab.load_model("digits")
    x = invlab.sample(model, z, steps=10, cond=pngs["label"]).final
    recon = load_image(out / "reconstruction.png", (1, 16, 16))
    assert (x.double().clamp(-1, 1) - recon).abs().max() < 2 / 255 + 1e-6   # equal up to 8-bit rounding
    assert (load_image(out / "input.png", (1, 16, 16)) - load_image(pngs["16"], (1, 16, 16))).abs().max() == 0


def test_diagnose_latent_model_with_fit_and_local_error(pngs, tmp_path):
    """diagnose on digits-latent (32x32): a 16x16 PNG needs --fit; naive inversion's local error is
    reported per step and is far above the exact method's solver tolerance."""
    out = tmp_path / "diag"
    r = _run(["diagnose", str(pngs["16"]), "--model", "digits-latent", "--cond", str(pngs["label"]), "--steps", "8",
              "--fit", "resize", "--quiet", "--out", str(out)], tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "" and r.stderr == ""                             # --quiet
    report = json.loads((out / "report.json").read_text())
    local = report["steps"]["local_error"]
    assert len(local) == 8 and all(v is not None and v >= 0 for v in local)
    assert max(local) > 1e-3                                             # naive is not an exact inverse
    assert report["summary"]["psnr_vae"] is not None                     # a latent model: the VAE's floor too
    assert report["nfe"]["local_solve"] > 0
    assert (out / "report.png").is_file()


def test_bad_inputs_exit_2_with_the_reason(pngs, tmp_path):
    """Through the script: an unreadable file exits 2 with the reason, no traceback, no output folder."""
    r = _run(["invert", str(pngs["bad"]), "--out", str(tmp_path / "o")], tmp_path)
    assert r.returncode == 2 and "cannot read" in r.stderr and "PNG or JPEG" in r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "o").exists()                                # nothing written on failure


@pytest.mark.parametrize("case, args, needle", [
    ("missing", ["{dir}/nope.png"], "no such image file"),
    ("unreadable", ["{bad}"], "cannot read"),
    ("size", ["{p32}", "--model", "digits"], "is 32x32 but the model takes 16x16 images; pass --fit resize"),
    ("rgb", ["{rgb}", "--model", "digits"], "RGB (RGB) (its three channels are equal"),
    ("prompt-on-class-model", ["{p16}", "--prompt", "a cat"], "class-conditional: pass --cond"),
    ("class-id", ["{p16}", "--cond", "seven"], "takes a class id 0..9"),
    ("guidance-without-cond", ["{p16}", "--guidance", "3"], "needs a condition"),
    ("not-an-image-model", ["{p16}", "--model", "gmm-2d"], "does not take images"),
    ("steps", ["{p16}", "--steps", "0"], "--steps must be a positive integer"),
])
def test_bad_input_messages(pngs, tmp_path, capsys, case, args, needle):
    fill = {"dir": str(tmp_path), "bad": str(pngs["bad"]), "p32": str(pngs["32"]), "rgb": str(pngs["rgb"]),
            "p16": str(pngs["16"])}
    argv = [a.format(**fill) for a in args] + ["--out", str(tmp_path / "o"), "--quiet"]
    assert main_invert(argv) == 2
    err = capsys.readouterr().err
    assert needle in err, err
    assert err.startswith("invlab invert: error: ")


def test_fit_and_convert(pngs, tmp_path):
    """--fit crop keeps the aspect ratio (a centred square of a wide image), --convert maps RGB to
    luminance and drops alpha; without them the same files are refused."""
    a = np.zeros((20, 40, 4), dtype=np.uint8)
    a[:, 10:30, :3] = 255                      # a white centred 20x20 square on black, wide canvas
    a[..., 3] = 255
    Image.fromarray(a, mode="RGBA").save(tmp_path / "wide.png")
    with pytest.raises(ValueError, match="--convert"):
        load_image(tmp_path / "wide.png", (1, 16, 16), fit="crop")
    x = load_image(tmp_path / "wide.png", (1, 16, 16), fit="crop", convert=True)
    assert x.shape == (1, 1, 16, 16) and x.dtype == torch.float64
    assert x.min() > 0.99                      # the crop is the white square only
    y = load_image(tmp_path / "wide.png", (1, 16, 16), fit="resize", convert=True)
    assert y.min() == -1.0                     # a stretch keeps the black margins
    g = load_image(pngs["16"], (3, 16, 16), convert=True)    # grayscale -> RGB copies the channel
    assert g.shape == (1, 3, 16, 16) and (g[:, 0] == g[:, 2]).all()
