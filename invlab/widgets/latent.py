"""Widgets for the latent notebook(s): thin glue over invlab.studies and invlab.plots."""

from __future__ import annotations

from typing import Mapping

import torch

from .core import Explorer, dropdown, int_slider

__all__ = ["ImageChainExplorer"]


class ImageChainExplorer(Explorer):
    """A slider over images and a dropdown over image sets (e.g. "real", "generated"): each
    image's stages through the latent chain side by side, with |stage - original| maps below.

    ``sets[name][stage]`` is a (B, 1, H, W) tensor, all computed beforehand; the first stage
    of each set is the reference the error maps are taken against. Nothing is recomputed.
    """

    def __init__(self, sets: Mapping[str, Mapping[str, torch.Tensor]]):
        from ..plots.latent import plot_image_panel

        if not isinstance(sets, Mapping) or not sets or not all(
                isinstance(v, Mapping) and v and all(isinstance(t, torch.Tensor) and t.dim() == 4 for t in v.values())
                for v in sets.values()):
            raise TypeError("ImageChainExplorer takes sets = {set name: {stage name: (B, C, H, W) tensor}}, e.g. "
                            "{'real': {'original': x, 'decoded': model.decode(model.encode(x))}}; "
                            f"got {type(sets).__name__}")
        self.sets = {k: dict(v) for k, v in sets.items()}
        names = list(self.sets)
        n = min(len(next(iter(s.values()))) for s in self.sets.values())

        def draw(image, images):
            stages = self.sets[images]
            ref = next(iter(stages))
            return plot_image_panel({k: v[image] for k, v in stages.items()}, reference=ref,
                                    title=f"{images} image {image}: each stage of the chain")

        super().__init__({"image": int_slider("image", 0, 0, n - 1), "images": dropdown("images", names)}, draw,
                         title="one image through encoder / decoder inversion and the diffusion round trip")
