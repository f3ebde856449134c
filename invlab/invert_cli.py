"""``invlab invert`` and ``invlab diagnose``: invert an image file from the command line.

Both read a PNG/JPEG, invert it with one of ``invlab.METHODS``, sample it back, and write the
reconstruction, the recovered noise (safetensors), a one-page report figure and its numbers as
JSON (:func:`invlab.diagnose.diagnose`). ``diagnose`` also solves every step exactly from the
inverted state (the local error; more NFE). See ``invlab invert --help``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

FITS = ("none", "resize", "crop")

_MAN = """\
NAME
    invlab {cmd} - {what}

SYNOPSIS
    invlab {cmd} IMAGE [--model M] [--cond C | --prompt TEXT] [--method X] [--steps N]
                 [--guidance W] [--solver S] [--fit none|resize|crop] [--convert] [--out DIR]
                 [--device D] [--dtype float32|float64] [--quiet]

DESCRIPTION
    Reads IMAGE (PNG, JPEG or anything PIL opens), scales it to [-1, 1] and inverts it to the
    noise z_T that the model's sampler (DDIM by default) would start from, with the inversion
    method X. Then samples z_T back to an image (the round trip) and measures the run without
    ground truth: per step, the forward residual (re-running the sampler's step from the
    inverted state; 0 for an exact inverse), the drift of the model's x0 prediction, the round
    trip's PSNR/SSIM and which steps lose it, and whether z_T looks like white noise.{extra}

    The image must have the model's size and colour: --model digits takes 16x16 grayscale,
    digits-latent 32x32 grayscale, a Stable Diffusion folder its VAE's size in RGB. Nothing is
    resized or converted unless asked: --fit resize stretches to the size, --fit crop takes the
    largest centred crop of the model's aspect ratio first (no distortion), then resizes
    (bilinear); --convert turns grayscale into RGB (copies) or RGB into grayscale (luminance),
    and drops an alpha channel.

OUTPUT FILES (in --out DIR, created if needed)
    input.png             the image as the model saw it (after --fit / --convert)
    reconstruction.png    the round trip: sampled back from the recovered noise
    noise.safetensors     the recovered noise, tensor "z_T" (1, C, H, W), with the run's
                          settings as metadata (load: safetensors.torch.load_file)
    report.png            the one-page report figure
    report.json           every number of the report (schema invlab.diagnose/1)

EXIT STATUS
    0 on success; 2 for a usage or input error (unreadable image, wrong size or colour, bad
    option), with the reason on stderr.

EXAMPLES
    invlab {cmd} seven.png --model digits --cond 7 --method exact --steps 20 --out out/
    invlab {cmd} photo.png --model ./my-sd-pipeline --prompt "a cat" --guidance 7.5 --fit crop
"""


def _parser(cmd: str) -> argparse.ArgumentParser:
    from .diagnose import DIAGNOSABLE

    what = ("invert an image to its noise, sample it back, and report" if cmd == "invert"
            else "invert an image and diagnose every step, with no ground truth")
    extra = ("" if cmd == "invert" else
             "\n\n    diagnose also solves every inversion step exactly from the inverted state and reports\n"
             "    the method's local error against that solve (about 5-20 extra network calls per step).")
    p = argparse.ArgumentParser(prog=f"invlab {cmd}", description=_MAN.format(cmd=cmd, what=what, extra=extra),
                                formatter_class=argparse.RawDescriptionHelpFormatter, usage=argparse.SUPPRESS)
    p.add_argument("image", metavar="IMAGE", help="the image file to invert")
    p.add_argument("--model", default="digits", metavar="M",
                   help="a built-in model (invlab.available_models(): digits, digits-latent, ...) or a local "
                        "diffusers pipeline folder (default: digits)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--cond", metavar="C", help="the condition: a class id for class-conditional models (digits: 0-9); "
                   "on a text model the same as --prompt")
    g.add_argument("--prompt", metavar="TEXT", help="the prompt, for text-conditional models")
    p.add_argument("--method", default="naive", choices=DIAGNOSABLE, metavar="X",
                   help=f"inversion method, one of {', '.join(DIAGNOSABLE)} (default: naive)")
    p.add_argument("--steps", type=int, default=50, metavar="N", help="sampler steps (default: 50)")
    p.add_argument("--guidance", type=float, default=1.0, metavar="W",
                   help="classifier-free guidance of the sampler being inverted (default: 1, no guidance; "
                        "other values need --cond/--prompt)")
    p.add_argument("--solver", default="ddim", metavar="S",
                   help="the sampler being inverted: ddim or dpmpp2m (euler on flow models) (default: ddim)")
    p.add_argument("--fit", default="none", choices=FITS,
                   help="what to do when the image is not the model's size: none (refuse, the default), resize "
                        "(stretch), crop (centre crop to the model's aspect ratio, then resize)")
    p.add_argument("--convert", action="store_true",
                   help="convert grayscale <-> RGB to the model's channels (refused without it)")
    p.add_argument("--out", default="invlab-out", metavar="DIR", help="output folder (default: invlab-out)")
    p.add_argument("--dtype", default=None, choices=("float32", "float64"),
                   help="the states' dtype (default: float64 for analytic models, float32 for networks)")
    p.add_argument("--device", default=None, metavar="D",
                   help="where the model runs: cpu, cuda, cuda:1, mps (default: the model's own default, cpu)")
    p.add_argument("--quiet", action="store_true", help="no progress bars or messages")
    return p


# ----------------------------------------------------------------------------------- image input
def model_image_shape(model) -> tuple[int, int, int]:
    """(C, H, W) of the images ``model`` takes (pixel models: its samples; latent models: what encode takes)."""
    shape = tuple(getattr(model, "image_shape", None) or model.sample_shape) if getattr(model, "is_latent", False) \
        else tuple(model.sample_shape)
    if model.image_range is None or len(shape) != 3 or shape[0] not in (1, 3):
        raise ValueError(f"model {model.name!r} does not take images (its samples have shape {tuple(model.sample_shape)}); "
                         "use an image model: digits, digits-latent or a Stable Diffusion pipeline folder")
    return shape  # type: ignore[return-value]


def read_image(path: str | Path):
    """Open ``path`` with PIL and load it (a ValueError naming the file if it is missing or unreadable)."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no such image file: {str(path)!r}")
    try:
        with Image.open(path) as im:
            im.load()
            img = im.copy()
    except (UnidentifiedImageError, OSError) as exc:
        raise ValueError(f"cannot read {str(path)!r} as an image ({type(exc).__name__}: {exc}); pass a PNG or JPEG "
                         "file") from None
    img.filename = str(path)                                # copy() drops it; the errors name the file
    return img


def load_image(path, shape: tuple[int, int, int], fit: str = "none", convert: bool = False):
    """Read ``path`` (a file name or an opened PIL image) as a (1, C, H, W) float64 tensor in
    [-1, 1] for a model taking images of ``shape`` (C, H, W).

    ``fit``: "none" refuses another size, "resize" stretches, "crop" centre-crops to the aspect
    ratio then resizes (bilinear). ``convert``: allow grayscale <-> RGB (and drop alpha)."""
    import numpy as np
    import torch
    from PIL import Image

    if fit not in FITS:
        raise ValueError(f"fit must be one of {FITS} (got {fit!r})")
    c, h, w = shape
    if isinstance(path, Image.Image):
        img, name = path, getattr(path, "filename", "") or "the image"
        name = Path(name).name
    else:
        img, name = read_image(path), Path(path).name
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "F"):   # 16-bit / float grayscale: scale to 8 bits first
        a = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I") and a.max() > 255 else (1.0 if img.mode == "F" and a.max() <= 1 else 255.0)
        img = Image.fromarray(np.round(np.clip(a / top, 0, 1) * 255).astype(np.uint8), mode="L")
    has_alpha = img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info)
    colour = img.mode not in ("1", "L", "LA") and not (img.mode == "P" and _grey_palette(img))
    want = "RGB" if c == 3 else "grayscale"
    have = "RGB" if colour else "grayscale"
    if have != want and not convert:
        hint = ""
        if have == "RGB":
            rgb = np.asarray(img.convert("RGB"))
            if (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all():
                hint = " (its three channels are equal: a gray picture stored as RGB)"
        raise ValueError(f"{name} is {have} ({img.mode}){hint} but the model takes {want} images ({c} channel"
                         f"{'s' if c > 1 else ''}, {w}x{h}); pass --convert to convert it")
    if has_alpha and not convert:
        raise ValueError(f"{name} has an alpha channel ({img.mode}); the model takes {want} images without "
                         "transparency: pass --convert to drop it")
    img = img.convert("RGB" if c == 3 else "L")
    if img.size != (w, h):
        if fit == "none":
            raise ValueError(f"{name} is {img.size[0]}x{img.size[1]} but the model takes {w}x{h} images; pass "
                             "--fit resize (stretch to the size) or --fit crop (centre crop to the aspect ratio, then "
                             "resize)")
        if fit == "crop":
            W0, H0 = img.size
            scale = min(W0 / w, H0 / h)
            cw, ch = round(w * scale), round(h * scale)
            left, top = (W0 - cw) // 2, (H0 - ch) // 2
            img = img.crop((left, top, left + cw, top + ch))
        img = img.resize((w, h), Image.BILINEAR)
    a = np.asarray(img, dtype=np.float64) / 127.5 - 1.0
    a = a[None] if c == 1 else a.transpose(2, 0, 1)
    return torch.from_numpy(np.ascontiguousarray(a))[None]


def _grey_palette(img) -> bool:
    pal = img.getpalette() or []
    rgb = [pal[i:i + 3] for i in range(0, len(pal), 3)]
    return all(r == g == b for r, g, b in rgb)


def save_png(x, path: Path) -> None:
    """Save the first image of a (B, C, H, W) batch in [-1, 1] as an 8-bit PNG."""
    import numpy as np
    from PIL import Image

    a = x[0].detach().double().cpu().clamp(-1, 1).numpy()
    u8 = np.round((a + 1) * 127.5).astype(np.uint8)
    img = Image.fromarray(u8[0], mode="L") if u8.shape[0] == 1 else Image.fromarray(u8.transpose(1, 2, 0), mode="RGB")
    img.save(path)


def _cond(model, cond: str | None, prompt: str | None) -> Any:
    if prompt is not None:
        if _class_model(model):
            raise ValueError(f"{model.name} is class-conditional: pass --cond with a class id 0..{model.num_classes - 1}, "
                             "not --prompt")
        return prompt
    if cond is None:
        return None
    if _class_model(model):
        try:
            c = int(cond)
        except ValueError:
            raise ValueError(f"{model.name} is class-conditional: --cond takes a class id 0..{model.num_classes - 1} "
                             f"(got {cond!r})") from None
        return c
    if getattr(model, "is_conditional", False):
        return cond                                          # a text model: --cond is the prompt
    raise ValueError(f"{model.name} is unconditional: leave out --cond/--prompt")


def _class_model(model) -> bool:
    return model.num_classes is not None


# ------------------------------------------------------------------------------------------- run
def run(argv: list[str], cmd: str) -> int:
    args = _parser(cmd).parse_args(argv)
    os.environ.setdefault("MPLBACKEND", "Agg")
    say = (lambda msg: None) if args.quiet else (lambda msg: print(f"invlab {cmd}: {msg}", file=sys.stderr, flush=True))
    try:
        import torch

        import invlab
        from .diagnose import diagnose

        if args.steps < 1:
            raise ValueError(f"--steps must be a positive integer (got {args.steps})")
        pil = read_image(args.image)                        # a bad file fails before the (slow) model load
        say(f"loading model {args.model}")
        model = invlab.load_model(args.model, **({"device": args.device} if args.device else {}))
        shape = model_image_shape(model)
        image = load_image(pil, shape, args.fit, args.convert)
        dtype = getattr(torch, args.dtype) if args.dtype else (
            torch.float64 if getattr(model, "dtype", torch.float64) == torch.float64 else torch.float32)
        image = image.to(dtype)
        cond = _cond(model, args.cond, args.prompt)
        if args.guidance != 1.0 and cond is None:
            raise ValueError(f"--guidance {args.guidance:g} needs a condition to guide towards: pass --cond/--prompt "
                             "(or --guidance 1)")
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        say(f"inverting {Path(args.image).name} ({shape[2]}x{shape[1]}, {args.method}, {args.steps} steps, "
            f"w = {args.guidance:g})")
        d = diagnose(model, image, cond=cond, steps=args.steps, method=args.method, guidance=args.guidance,
                     solver=args.solver, local=(cmd == "diagnose"), show_progress=not args.quiet)
    except (ValueError, TypeError, FileNotFoundError) as exc:
        print(f"invlab {cmd}: error: {exc}", file=sys.stderr)
        return 2
    from safetensors.torch import save_file

    save_png(image, out / "input.png")
    save_png(d.images["reconstruction"] if "reconstruction" in d.images else d.recon.final, out / "reconstruction.png")
    meta = {k: json.dumps(v) for k, v in d.run.items()}
    save_file({"z_T": d.inversion.final.detach().cpu().contiguous()}, str(out / "noise.safetensors"), metadata=meta)
    d.save(out, figure=True, name="report")
    s = d.summary()
    say(f"wrote {out}/: input.png, reconstruction.png, noise.safetensors, report.png, report.json")
    if not args.quiet:
        psnr = f"PSNR {s['psnr']:.2f} dB, " if s.get("psnr") is not None else ""
        local = (f", max local error {s['max_local_error']:.3g} (step {s['worst_local_step']})"
                 if s.get("max_local_error") is not None else "")
        print(f"{psnr}round-trip latent RMS {s['recon_rmse']:.3g}, max forward residual "
              f"{s['max_forward_residual']:.3g} (step {s['worst_residual_step']}){local}")
    return 0


def main_invert(argv: list[str] | None = None) -> int:
    return run(list(sys.argv[1:] if argv is None else argv), "invert")


def main_diagnose(argv: list[str] | None = None) -> int:
    return run(list(sys.argv[1:] if argv is None else argv), "diagnose")
