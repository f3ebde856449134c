"""Wrong calls to the whole public surface, one row each: the error type and a message that names
the problem and the fix, or -- where the call is legitimate -- that it works and gives the right
result (dtype mixes, channels-last / non-contiguous inputs, inputs that require grad, ...).

Models load lazily (a row loads only what it calls) and once per module.
"""

from __future__ import annotations

import shutil
import warnings
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Callable

import pytest
import torch

import invlab
from invlab.data import digits_images

HAS_CUDA = torch.cuda.is_available()
NO_CUDA = "CUDA is not available in this torch build; use device='cpu'|no CUDA GPU is visible"
OUR_WARNINGS = ("expected in [-1, 1]", "typical 1-15")  # a "works" row must not trigger these


class Ctx:
    """Models and data the rows share, built on first use."""

    def __init__(self, tmp_path_factory):
        self._tmp = tmp_path_factory

    def tmp(self):
        return self._tmp.mktemp("row")

    @cached_property
    def gmm(self):
        return invlab.load_model("gmm-digits")

    @cached_property
    def gmm2d(self):
        return invlab.load_model("gmm-2d")

    @cached_property
    def net(self):
        return invlab.load_model("digits")

    @cached_property
    def net16(self):
        return invlab.load_model("digits", dtype=torch.float16)

    @cached_property
    def latent(self):
        return invlab.load_model("digits-latent")

    @cached_property
    def pipe_dir(self):
        from invlab.models.sd import save_tiny_pipeline

        return save_tiny_pipeline(self._tmp.mktemp("tiny-sd"))

    @cached_property
    def sd(self):
        mp = pytest.MonkeyPatch()
        mp.setenv("HF_HUB_OFFLINE", "1")
        try:
            return invlab.load_model(str(self.pipe_dir))
        finally:
            mp.undo()

    @cached_property
    def img16(self) -> torch.Tensor:  # two real digits, (2, 1, 16, 16) in [-1, 1]
        return digits_images(size=16)[0][:2]

    @cached_property
    def img32(self) -> torch.Tensor:  # (2, 1, 32, 32) in [-1, 1], digits-latent's image size
        return digits_images(size=32)[0][:2]

    @cached_property
    def traj(self):  # a small finished inversion (for widgets that take Trajectories)
        return invlab.invert(self.gmm, self.img16.double(), 3)


def u8(x):  # [-1, 1] -> [0, 255] (a float tensor, as from PIL / torchvision's PILToTensor().float())
    return ((x + 1) * 127.5).round()


def unit(x):  # [-1, 1] -> [0, 1] (torchvision's ToTensor)
    return (x + 1) / 2


@dataclass
class Row:
    id: str
    call: Callable[[Ctx], Any]
    raises: type[BaseException] | None = None
    warns: type[Warning] | None = None
    match: str | None = None
    check: Callable[[Any, Ctx], None] | None = None


def err(id, call, exc, match):
    return Row(id, call, raises=exc, match=match)


def warn(id, call, match, check=None):
    return Row(id, call, warns=UserWarning, match=match, check=check)


def works(id, call, check=None):
    return Row(id, call, check=check)


# ------------------------------------------------------------------------ checks used by "works" rows
def dtype_is(dt):
    def check(out, c):
        assert out.dtype == dt and torch.isfinite(out).all()
    return check


def same_as(reference: Callable[[Ctx], torch.Tensor], atol: float = 0.0):
    """The row's result equals ``reference(c)`` (exactly when atol == 0)."""
    def check(out, c):
        ref = reference(c)
        assert out.shape == ref.shape and out.dtype == ref.dtype
        if atol == 0.0:
            assert torch.equal(out, ref)
        else:
            torch.testing.assert_close(out, ref, rtol=0.0, atol=atol)
    return check


def _one_key_x_next(hook, c):
    assert hook.keys == frozenset({"x_next"})


def _fn_invert_tensor(i, t):
    return t["x_next"]  # a bare tensor instead of {"x_next": tensor}


def _no_folder(c):
    return invlab.load_model(str(c.tmp() / "no-such-pipeline"))


def _without_unet_weights(c):
    folder = c.tmp() / "pipe"
    shutil.copytree(c.pipe_dir, folder)
    (folder / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    return invlab.load_model(str(folder))


def _nbsetup(**overrides):
    from invlab.nbsetup import setup

    def call(c):
        params = {"QUICK": True, "SEED": 0, "MODEL": "gmm-digits", "STEPS": 10, "GUIDANCE": 1.0,
                  "FIGURES": str(c.tmp() / "figures"), **overrides}
        return setup(**params)
    return call


def _grad_flows_to_image(out, c):
    assert out.requires_grad  # encode carries the graph back to the image
    out.sum().backward()


def _detached(out, c):
    assert not out.requires_grad and out.grad_fn is None and out.dtype == torch.float32


def _records(keys_present, keys_absent):
    def check(traj, c):
        r = traj.records[1]
        assert all(getattr(r, k) is not None for k in keys_present)
        assert all(getattr(r, k) is None for k in keys_absent)
    return check


def _plus_minus_one():  # noise of RMS exactly 1 (in [0, 255] units)
    return torch.where(torch.rand(2, 1, 16, 16) < 0.5, -1.0, 1.0)


def _float64_on_cpu(m, c):
    assert (m.dtype, m.device) == (torch.float64, torch.device("cpu"))


def _finite(out, c):
    assert torch.isfinite(out).all()


def _thousand_steps(traj, c):
    assert len(traj) == 1000 and torch.isfinite(traj.final).all()


def _psnr_about_48(out, c):  # 255^2 / MSE(1) -> 48.1 dB; the default data_range=2 gave ~6 dB
    assert 47.0 < float(out.mean()) < 49.5


# ------------------------------------------------------------------------------------------ the table
ROWS = [
    # --- images where [-1, 1] is expected (pixel models' invert, encode, invert_decoder, metrics)
    err("invert gmm-digits on [0,255] images", lambda c: invlab.invert(c.gmm, u8(c.img16).double(), 3),
        ValueError, r"images are expected in \[-1, 1\]; got values in \[0, 255\]: use x/127.5 - 1 \(for \[0,255\]\) "
                    r"or 2\*x - 1 \(for \[0,1\]\)"),
    err("invert digits on [0,255] images", lambda c: invlab.invert(c.net, u8(c.img16), 3),
        ValueError, r"images are expected in \[-1, 1\].*x/127.5 - 1"),
    warn("invert digits on [0,1] images", lambda c: invlab.invert(c.net, unit(c.img16), 3),
         r"expected in \[-1, 1\] but all values are in \[0, 1\].*2\*x - 1"),
    warn("invert gmm-digits on [0,1] images", lambda c: invlab.invert(c.gmm, unit(c.img16).double(), 3),
         r"\[0, 1\] images, use x/127.5 - 1 \(for \[0,255\]\) or 2\*x - 1"),
    works("invert digits-latent takes latents: no range check",
          lambda c: invlab.invert(c.latent, 4 * invlab.noise(c.latent, 2, dtype=torch.float32), 3, cond=1).final,
          dtype_is(torch.float32)),
    works("sample takes noise: no range check", lambda c: invlab.sample(c.gmm, 3 * invlab.noise(c.gmm, 1), 3).final,
          dtype_is(torch.float64)),
    err("encode [0,255] images", lambda c: c.latent.encode(u8(c.img32)),
        ValueError, r"images are expected in \[-1, 1\]; got values in \[0, 255\]"),
    warn("encode [0,1] images", lambda c: c.latent.encode(unit(c.img32)), r"2\*x - 1 \(for \[0,1\]\)"),
    err("invert_decoder on [0,255] images",
        lambda c: invlab.invert_decoder(c.latent, u8(c.img32), iterations=1, warmup=0), ValueError,
        r"images are expected in \[-1, 1\].*x/127.5 - 1"),
    warn("invert_decoder on [0,1] images",
         lambda c: invlab.invert_decoder(c.latent, unit(c.img32), iterations=1, warmup=0), r"none negative"),
    err("psnr of [0,255] images with the default data_range",
        lambda c: invlab.metrics.psnr(u8(c.img16), u8(c.img16) + 1), ValueError,
        r"default data_range=2 assumes \[-1, 1\]; pass data_range=255.*or rescale"),
    err("ssim of [0,255] images with the default data_range", lambda c: invlab.metrics.ssim(u8(c.img16), u8(c.img16)),
        ValueError, r"pass data_range=255"),
    works("psnr of [0,255] images with data_range=255",
          lambda c: invlab.metrics.psnr(u8(c.img16), u8(c.img16) + _plus_minus_one(), data_range=255), _psnr_about_48),
    works("psnr of a diverged reconstruction against [-1,1] truth (no false alarm)",
          lambda c: invlab.metrics.psnr(3 * c.img16, c.img16), _finite),
    err("psnr with data_range=0", lambda c: invlab.metrics.psnr(c.img16, c.img16, data_range=0),
        ValueError, r"data_range must be > 0"),

    # --- dtype mixes
    works("float16 images on the float32 digits net (returns float16)",
          lambda c: invlab.invert(c.net, c.img16.half(), 3).final, dtype_is(torch.float16)),
    works("float16 noise on the float32 digits net, sampling",
          lambda c: invlab.sample(c.net, invlab.noise(c.net, 2, dtype=torch.float16), 3, guidance=2.0,
                                  cond=[1, 7]).final, dtype_is(torch.float16)),
    works("float32 noise on a float16 model",
          lambda c: invlab.sample(c.net16, invlab.noise(c.net16, 2, dtype=torch.float32), 3, cond=4).final,
          dtype_is(torch.float32)),
    works("float64 images on a float16 model", lambda c: invlab.invert(c.net16, c.img16.double(), 3).final,
          dtype_is(torch.float64)),
    works("float32 latents on the float64 analytic mixture (computes in float32)",
          lambda c: invlab.invert(c.gmm, c.img16, 3, cond=[0, 1]).final, dtype_is(torch.float32)),
    works("gmm-digits has .dtype/.device and takes device=", lambda c: invlab.load_model("gmm-digits", device="cpu"),
          _float64_on_cpu),
    err("gmm-digits with dtype=float32", lambda c: invlab.load_model("gmm-digits", dtype=torch.float32),
        ValueError, r"computes eps in the dtype of the latents you pass.*"
                    r"invlab.noise\(model, 8, dtype=torch.float32\)"),
    err("load_model dtype as a string", lambda c: invlab.load_model("digits", dtype="float16"),
        TypeError, r"dtype must be a torch.dtype, not the string 'float16'; pass e.g. dtype=torch.float32"),

    # --- devices
    err("meta tensor into invert", lambda c: invlab.invert(c.net, torch.empty(2, 1, 16, 16, device="meta"), 3),
        ValueError, r"x0 is on meta .*move it with \.to\('cpu'\)"),
    err("meta tensor into sample", lambda c: invlab.sample(c.gmm, torch.empty(2, 1, 16, 16, device="meta"), 3),
        ValueError, r"z_T is on meta"),
    err("meta image into encode", lambda c: c.latent.encode(torch.empty(1, 1, 32, 32, device="meta")),
        ValueError, r"image is on meta"),
    (works("digits on cuda:0", lambda c: invlab.load_model("digits", device="cuda:0")) if HAS_CUDA else
     err("digits on cuda:0 without CUDA", lambda c: invlab.load_model("digits", device="cuda:0"), ValueError, NO_CUDA)),
    (works("gmm-digits on cuda", lambda c: invlab.load_model("gmm-digits", device="cuda")) if HAS_CUDA else
     err("gmm-digits on cuda without CUDA", lambda c: invlab.load_model("gmm-digits", device="cuda"), ValueError,
         NO_CUDA)),
    err("device name typo", lambda c: invlab.load_model("gmm-2d", device="cpuu"),
        ValueError, r"unknown device 'cpuu' \(did you mean 'cpu'\?\)"),
    err("noise on the meta device", lambda c: invlab.noise(c.gmm, 2, device="meta"), ValueError, r"holds no data"),

    # --- requires_grad, strides, memory formats
    works("images that require grad (results detached)",
          lambda c: invlab.invert(c.net, c.img16.clone().requires_grad_(True), 3).final, _detached),
    works("requires_grad gives the same result as without",
          lambda c: invlab.invert(c.gmm, c.img16.double().requires_grad_(True), 3, cond=[0, 1]).final,
          same_as(lambda c: invlab.invert(c.gmm, c.img16.double(), 3, cond=[0, 1]).final)),
    works("encode of an image that requires grad carries the graph",
          lambda c: c.latent.encode(c.img32.clone().requires_grad_(True)), _grad_flows_to_image),
    works("non-contiguous float64 input == contiguous, exactly",
          lambda c: invlab.invert(c.gmm, c.img16.double().transpose(2, 3), 3, cond=[2, 3]).final,
          same_as(lambda c: invlab.invert(c.gmm, c.img16.double().transpose(2, 3).contiguous(), 3, cond=[2, 3]).final)),
    works("non-contiguous float32 input on the digits net == contiguous",
          lambda c: invlab.invert(c.net, c.img16.transpose(2, 3), 3, cond=5).final,
          same_as(lambda c: invlab.invert(c.net, c.img16.transpose(2, 3).contiguous(), 3, cond=5).final, 1e-6)),
    works("channels-last latents on digits-latent == contiguous",
          lambda c: invlab.sample(c.latent, invlab.noise(c.latent, 2, dtype=torch.float32).to(
              memory_format=torch.channels_last), 3, guidance=2.0, cond=[3, 8]).final,
          same_as(lambda c: invlab.sample(c.latent, invlab.noise(c.latent, 2, dtype=torch.float32), 3, guidance=2.0,
                                          cond=[3, 8]).final, 1e-6)),
    works("channels-last images into encode == contiguous",
          lambda c: c.latent.encode(c.img32.expand(2, 1, 32, 32).to(memory_format=torch.channels_last)),
          same_as(lambda c: c.latent.encode(c.img32.expand(2, 1, 32, 32).contiguous()), 1e-6)),

    # --- batch sizes
    err("noise(m, 0)", lambda c: invlab.noise(c.gmm, 0), ValueError, r"batch size is 0; pass at least one sample"),
    err("noise(m, -1)", lambda c: invlab.noise(c.gmm, -1), ValueError, r"batch size must be a positive int \(got -1\)"),
    err("noise(m, 2.5)", lambda c: invlab.noise(c.gmm, 2.5), TypeError, r"batch must be an int \(got 2.5"),
    err("noise(m, '3')", lambda c: invlab.noise(c.gmm, "3"), TypeError, r"batch must be an int \(got '3'"),
    err("noise with a string seed", lambda c: invlab.noise(c.gmm, 2, seed="0"), TypeError, r"seed must be an int"),
    err("noise of something that is not a model", lambda c: invlab.noise("gmm-digits", 2), TypeError,
        r"invlab Denoiser \(from invlab.load_model\)"),
    err("sample an empty batch", lambda c: invlab.sample(c.gmm, invlab.noise(c.gmm, 1)[:0], 3),
        ValueError, r"batch size is 0 .*pass at least one sample"),
    err("invert an empty batch", lambda c: invlab.invert(c.net, c.img16[:0], 3), ValueError, r"batch size is 0"),
    err("encode an empty batch", lambda c: c.latent.encode(c.img32[:0]), ValueError, r"batch size is 0"),

    # --- steps
    err("steps as a float", lambda c: invlab.sample(c.gmm, invlab.noise(c.gmm, 1), 2.5), TypeError,
        r"steps must be an int"),
    err("steps=1000 on DDIM (leading spacing, steps_offset=1)",
        lambda c: invlab.sample(c.gmm, invlab.noise(c.gmm, 1), 1000), ValueError,
        r"steps=1000 does not fit DDIM with timestep_spacing='leading' and steps_offset=1 .*label 1000 lies outside "
        r"\[0, 999\].*largest step count below 1000 that does is 999"),
    works("steps=1000 on DDIM with trailing spacing",
          lambda c: invlab.sample(c.gmm2d, invlab.noise(c.gmm2d, 1), 1000, hooks=[invlab.Recorder(keys=())],
                                  grid_overrides={"timestep_spacing": "trailing"}),
          _thousand_steps),
    err("steps=1000 on DPM-Solver++(2M) (labels would repeat)",
        lambda c: invlab.invert(c.gmm, c.img16.double(), 1000, solver="dpmpp2m"), ValueError,
        r"DPM-Solver\+\+\(2M\).*the timestep labels repeat.*is 998"),
    err("steps beyond the schedule", lambda c: invlab.sample(c.gmm, invlab.noise(c.gmm, 1), 5000), ValueError,
        r"steps=5000 exceeds the schedule's 1000 train timesteps"),
    err("grid_overrides typo", lambda c: invlab.sample(c.gmm, invlab.noise(c.gmm, 1), 3,
                                                        grid_overrides={"timestep_spacng": "trailing"}),
        ValueError, r"unknown scheduler option 'timestep_spacng' \(did you mean 'timestep_spacing'\?\)"),
    err("grid_overrides spacing typo", lambda c: invlab.sample(c.gmm, invlab.noise(c.gmm, 1), 3,
                                                                grid_overrides={"timestep_spacing": "trail"}),
        ValueError, r"timestep_spacing must be one of .* \(did you mean 'trailing'\?\)"),

    # --- guidance
    err("guidance NaN", lambda c: invlab.sample(c.gmm, invlab.noise(c.gmm, 1), 3, guidance=float("nan"), cond=1),
        ValueError, r"guidance must be a finite number \(got nan\).*typical values are 1-15"),
    err("guidance inf", lambda c: invlab.sample(c.gmm, invlab.noise(c.gmm, 1), 3, guidance=float("inf"), cond=1),
        ValueError, r"guidance must be a finite number"),
    warn("guidance 1e6", lambda c: invlab.sample(c.gmm, invlab.noise(c.gmm, 1), 3, guidance=1e6, cond=1,
                                                check_finite=False),
         r"guidance=1e\+06 is far above the typical 1-15"),
    err("guidance negative", lambda c: invlab.sample(c.gmm, invlab.noise(c.gmm, 1), 3, guidance=-1.0, cond=1),
        ValueError, r"guidance must be a finite number >= 0 \(got -1.0\); 0 is the unconditional model"),
    err("guidance a string", lambda c: invlab.invert(c.gmm, c.img16.double(), 3, guidance="x", cond=1),
        TypeError, r"guidance must be a number \(got 'x'\); pass e.g. guidance=3.0"),

    # --- conditions
    err("cond of the wrong batch length", lambda c: invlab.sample(c.net, invlab.noise(c.net, 2), 3, cond=[1, 2, 3]),
        ValueError, r"cond must be one class id or 2 of them \(one per row\)"),
    err("float class id on gmm-digits (was silently truncated)",
        lambda c: invlab.sample(c.gmm, invlab.noise(c.gmm, 1), 3, cond=2.5),
        TypeError, r"cond must be an integer class id 0\.\.9"),
    err("float class id on digits", lambda c: invlab.sample(c.net, invlab.noise(c.net, 1), 3, cond=3.0),
        TypeError, r"integer class id"),
    err("prompt on a class model", lambda c: invlab.sample(c.net, invlab.noise(c.net, 1), 3, cond="a cat"),
        TypeError, r"this model \(digits\) is class-conditional: pass a class id 0\.\.9, not a prompt"),
    err("prompt on the analytic mixture", lambda c: invlab.invert(c.gmm, c.img16.double(), 3, cond=["a", "b"]),
        TypeError, r"class-conditional: pass a class id 0\.\.9, not a prompt"),
    err("class id on a text model",
        lambda c: invlab.sample(c.sd, invlab.noise(c.sd, 1, dtype=torch.float32), 2, cond=3), TypeError,
        r"this model is text-conditional: pass a prompt .*class id belongs to class-conditional"),
    err("class ids on a text model", lambda c: invlab.sample(c.sd, invlab.noise(c.sd, 2, dtype=torch.float32), 2,
                                                             cond=[1, 2]),
        TypeError, r"text-conditional.*not class ids"),
    err("class id out of range", lambda c: invlab.sample(c.gmm2d, invlab.noise(c.gmm2d, 1), 3, cond=3),
        ValueError, r"classes 0\.\.2"),

    # --- unknown names, with a suggestion
    err("model typo", lambda c: invlab.load_model("gmm-digit"), ValueError,
        r"unknown model 'gmm-digit' \(did you mean 'gmm-digits'\?\); choose one of"),
    err("solver typo", lambda c: invlab.sample(c.gmm, invlab.noise(c.gmm, 1), 3, solver="DDIM"), ValueError,
        r"unknown solver 'DDIM' \(did you mean 'ddim'\?\)"),
    err("method typo", lambda c: invlab.invert(c.gmm, c.img16.double(), 3, method="exat"), ValueError,
        r"unknown method 'exat' \(did you mean 'exact'\?\)"),
    err("metric typo", lambda c: invlab.metrics.get("nmsee"), ValueError,
        r"unknown metric 'nmsee' \(did you mean 'nmse'\?\)"),
    err("option-name typo", lambda c: invlab.invert(c.gmm, c.img16.double(), 3, method="easyinv", etta=0.3),
        TypeError, r"method 'easyinv' has no option 'etta' \(did you mean 'eta'\?\)"),
    err("load_model option typo", lambda c: invlab.load_model("digits", dtpye=torch.float16), TypeError,
        r"load_model\('digits'\) has no option 'dtpye' \(did you mean 'dtype'\?\)"),
    err("gmm device typo (no internal function name)", lambda c: invlab.load_model("gmm-digits", devcie="cpu"),
        TypeError, r"load_model\('gmm-digits'\) has no option 'devcie' \(did you mean 'device'\?\)"),
    err("option-value typo", lambda c: invlab.invert(c.gmm, c.img16.double(), 3, label="targte"), ValueError,
        r"label must be one of \('target', 'current'\) \(got 'targte'\) \(did you mean 'target'\?\)"),
    err("inner-solver typo", lambda c: invlab.invert(c.gmm, c.img16.double(), 3, method="exact", inner="andersen"),
        ValueError, r"inner must be one of .*\(did you mean 'anderson'\?\)"),
    err("decoder-inversion option typo", lambda c: invlab.invert_decoder(c.latent, c.img32, iteratons=3), TypeError,
        r"invert_decoder has no option 'iteratons' \(did you mean 'iterations'\?\)"),
    err("nmse reduction typo", lambda c: invlab.metrics.nmse(c.img16, c.img16, reduction="sum"), ValueError,
        r"reduction must be one of \('mean', 'none'\)"),

    # --- option values
    err("EasyInv eta as a string", lambda c: invlab.invert(c.gmm, c.img16.double(), 3, method="easyinv", eta="0.5"),
        TypeError, r"eta must be a number"),
    err("EasyInv window as a number", lambda c: invlab.invert(c.gmm, c.img16.double(), 3, method="easyinv", window=0.5),
        TypeError, r"window must be a pair \(lo, hi\)"),
    err("EasyInv oracle gain with a tensor as reference",
        lambda c: invlab.invert(c.gmm, c.img16.double(), 3, method="easyinv", gain="oracle", window=(0, 1),
                                reference=c.img16), TypeError,
        r"reference must be the sampling Trajectory \(from invlab.sample\) on the same grid \(got Tensor\)"),
    err("exact max_iter as a string", lambda c: invlab.invert(c.gmm, c.img16.double(), 3, method="exact", max_iter="5"),
        TypeError, r"max_iter must be an int"),

    # --- folders and files
    err("load_model on a folder that does not exist", _no_folder, ValueError, r"no such folder '.*no-such-pipeline'"),
    err("load_model on a pipeline folder without unet weights", _without_unet_weights, ValueError,
        r"lacks \['unet/diffusion_pytorch_model.safetensors'\]"),
    err("notebooks.execute on a missing notebook",
        lambda c: invlab.notebooks.execute(c.tmp() / "99_missing.ipynb", c.tmp(), True, c.tmp()),
        FileNotFoundError, r"no notebook at .*99_missing.ipynb"),

    # --- image sizes
    err("invert_decoder of 16x16 images on digits-latent",
        lambda c: invlab.invert_decoder(c.latent, c.img16, iterations=1, warmup=0), ValueError,
        r"image has shape \(2, 1, 16, 16\) but digits-latent's VAE maps \(B, 1, 32, 32\) images"),
    err("encode of 16x16 images on digits-latent", lambda c: c.latent.encode(c.img16), ValueError,
        r"digits-latent encodes \(B, 1, 32, 32\); resize it"),
    err("SD encode of an image of another size", lambda c: c.sd.encode(torch.rand(1, 3, 32, 32) * 2 - 1), ValueError,
        r"image is 32x32 but this pipeline was loaded for 16x16 images.*height=32, width=32"),
    err("SD encode of [0,255] images", lambda c: c.sd.encode(torch.rand(1, 3, 16, 16) * 255), ValueError,
        r"images are expected in \[-1, 1\]"),

    # --- hooks and interventions
    works("hooks=Recorder() (one hook, not a list)",
          lambda c: invlab.invert(c.gmm, c.img16.double(), 3, hooks=invlab.Recorder(keys=("eps",))),
          _records(["eps"], ["x_next"])),
    works("Recorder(keys='eps') records one key", lambda c: invlab.sample(c.gmm, invlab.noise(c.gmm, 1), 3,
                                                                          hooks=[invlab.Recorder(keys="eps")]),
          _records(["eps"], ["x_next", "x_cur"])),
    works("easyinv with a single hook", lambda c: invlab.invert(c.gmm, c.img16.double(), 20, method="easyinv",
                                                                hooks=invlab.Recorder(keys=("x_next",))),
          _records(["x_next"], ["eps"])),
    err("Recorder key typo", lambda c: invlab.Recorder(keys=("epsilon",)), ValueError,
        r"Recorder cannot record \['epsilon'\] \(did you mean 'eps'\?\)"),
    err("intervention returning a bare tensor",
        lambda c: invlab.invert(c.gmm, c.img16.double(), 3,
                                hooks=[invlab.FunctionIntervention(_fn_invert_tensor, {"x_next"})]),
        TypeError, r"must return a dict like \{'x_next': tensor\} or None \(got Tensor at step 0\)"),
    works("intervention keys given as one string: one key",
          lambda c: invlab.FunctionIntervention(lambda i, t: None, "x_next"),
          _one_key_x_next),
    err("intervention fn that is not callable", lambda c: invlab.FunctionIntervention("x_next", {"x_next"}),
        TypeError, r"fn must be a function \(index, tensors\)"),
    err("errors_to metric typo", lambda c: c.traj.errors_to(c.traj, metric="nmsee"),
        ValueError, r"did you mean 'nmse'"),
    err("intervention stage typo",
        lambda c: invlab.invert(c.gmm, c.img16.double(), 3,
                                hooks=[invlab.FunctionIntervention(lambda i, t: None, {"x_next"}, stage="steps")]),
        ValueError, r"intervention stage must be one of .* \(did you mean 'step'\?\)"),
    err("hook that is not a hook", lambda c: invlab.invert(c.gmm, c.img16.double(), 3, hooks=[42]), TypeError,
        r"a hook must be an Observer, an Intervention or a callable"),

    # --- widgets
    err("StepExplorer given a Trajectory", lambda c: invlab.widgets.StepExplorer(c.traj), TypeError,
        r"StepExplorer takes a comparison of inversion methods \(a Comparison, from invlab.studies.errors"
        r".run_methods\); got Trajectory"),
    err("FlowExplorer given a model name", lambda c: invlab.widgets.FlowExplorer("gmm-2d", torch.zeros(2, 2)),
        TypeError, r"FlowExplorer takes a model .*got str"),
    err("FlowExplorer on a non-2-D model", lambda c: invlab.widgets.FlowExplorer(c.gmm, invlab.noise(c.gmm, 2)),
        ValueError, r"2-D analytic model such as invlab.load_model\('gmm-2d'\)"),
    err("FlowExplorer with a steps value not offered",
        lambda c: invlab.widgets.FlowExplorer(c.gmm2d, invlab.noise(c.gmm2d, 2), steps=7), ValueError,
        r"steps=7 is not one of the options \[5, 10, 20, 50\]"),
    err("GuidanceExplorer given a dict", lambda c: invlab.widgets.GuidanceExplorer({}), TypeError,
        r"GuidanceExplorer takes a guidance sweep \(a GuidanceSweep"),
    err("KalmanExplorer eta out of range",
        lambda c: invlab.widgets.KalmanExplorer(c.gmm, invlab.noise(c.gmm, 1), steps=10, eta=1.5), ValueError,
        r"eta=1.5 is outside the slider's range \[0.0, 1.0\]"),
    err("ImageChainExplorer given a list", lambda c: invlab.widgets.ImageChainExplorer([c.img32]), TypeError,
        r"ImageChainExplorer takes sets = \{set name: \{stage name"),
    err("InnerSolverExplorer step out of range",
        lambda c: invlab.widgets.InnerSolverExplorer({"naive": c.traj}, step=9), ValueError,
        r"step=9 is outside the slider's range \[1, 3\]"),
    err("InnerSolverExplorer given a list", lambda c: invlab.widgets.InnerSolverExplorer([c.traj]), TypeError,
        r"runs = \{solver name: Trajectory"),
    err("int_slider value out of range", lambda c: invlab.widgets.int_slider("step", 12, 1, 10), ValueError,
        r"step=12 is outside the slider's range \[1, 10\]"),
    err("float_slider with min > max", lambda c: invlab.widgets.float_slider("eta", 0.5, 1.0, 0.0), ValueError,
        r"minimum 1.0 is above maximum 0.0; swap them"),
    err("select_slider value not an option", lambda c: invlab.widgets.select_slider("w", [1.0, 2.0], 3.0), ValueError,
        r"w=3.0 is not one of the options \[1.0, 2.0\]"),

    # --- the notebooks' config cell
    err("nbsetup SEED as a string", _nbsetup(SEED="0"), ValueError, r"SEED must be an integer \(got '0'\)"),
    err("nbsetup STEPS 2.5", _nbsetup(STEPS=2.5), ValueError, r"parameter STEPS: steps must be an int"),
    err("nbsetup GUIDANCE 'x'", _nbsetup(GUIDANCE="x"), ValueError, r"parameter GUIDANCE: guidance must be a number"),
    err("nbsetup DTYPE 'float'", _nbsetup(DTYPE="float"), ValueError,
        r"parameter DTYPE must be one of .*\(got 'float'\) \(did you mean 'float64'\?\)"),
    err("nbsetup MODEL typo", _nbsetup(MODEL="digit"), ValueError,
        r"unknown MODEL 'digit' \(did you mean 'digits'\?\)"),
    (works("nbsetup DEVICE cuda", _nbsetup(DEVICE="cuda")) if HAS_CUDA else
     err("nbsetup DEVICE cuda without CUDA", _nbsetup(DEVICE="cuda"), ValueError,
         r"parameter DEVICE='cuda': .*DEVICE='cpu'")),
]


def test_table_is_large_enough():
    assert len(ROWS) >= 45 and len({r.id for r in ROWS}) == len(ROWS)


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    return Ctx(tmp_path_factory)


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_bad_input(row: Row, ctx: Ctx):
    import invlab.notebooks  # noqa: F401  (rows call invlab.notebooks / invlab.widgets)
    import invlab.widgets  # noqa: F401

    if row.raises is not None:
        with pytest.raises(row.raises, match=row.match):
            row.call(ctx)
        return
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = row.call(ctx)
    ours = [w for w in caught if any(s in str(w.message) for s in OUR_WARNINGS)]
    if row.warns is not None:
        import re

        assert any(issubclass(w.category, row.warns) and re.search(row.match, str(w.message)) for w in ours), \
            f"expected a {row.warns.__name__} matching {row.match!r}; got {[str(w.message) for w in caught]}"
    else:
        assert not ours, f"a legitimate call warned: {[str(w.message) for w in ours]}"
    if row.check is not None:
        row.check(out, ctx)
