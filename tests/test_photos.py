"""The ``photos`` data: real photographs bundled with scikit-image and scikit-learn, cut into crops."""

import pytest
import torch

from invlab import photos


def test_every_photograph_is_bundled_and_in_range():
    for name in photos.PHOTO_CLASSES:
        pic = photos.picture(name)
        assert pic.shape[0] == 3 and min(pic.shape[1:]) == photos.BASE
        assert pic.min() >= -1 and pic.max() <= 1 and pic.std() > 0.05       # a real picture, not a constant


def test_train_crops_are_reproducible_and_labelled():
    a, b = photos.train_crops(3, seed=5), photos.train_crops(3, seed=5)
    assert a.images.shape == (30, 3, photos.CROP, photos.CROP) and torch.equal(a.images, b.images)
    assert torch.equal(a.labels, torch.arange(10).repeat_interleave(3))
    assert not torch.equal(a.images, photos.train_crops(3, seed=6).images)


def test_heldout_band_is_never_cropped_for_training():
    """Training crops lie left of the held-out band at every scale; held-out crops inside it."""
    for name in photos.PHOTO_CLASSES:
        w1 = photos.picture(name, 1.0).shape[2]
        assert photos._train_width(name, 1.0) <= w1 - photos.HELDOUT_BAND
        for s in photos._scales():
            w = photos.picture(name, s).shape[2]
            # the training region, as a fraction of the width, never reaches the band's left edge
            assert photos._train_width(name, s) / w <= (w1 - photos.HELDOUT_BAND) / w1 + 1e-9
    held = photos.heldout_crops(rows=2, cols=2)
    assert held.images.shape == (40, 3, 64, 64)
    pic = photos.picture("cat", 1.0)
    assert torch.equal(held.images[4 + 1], pic[:, :64, pic.shape[2] - 64:])     # cat's top-right crop


def test_class_ids_and_bad_names():
    assert photos.class_id("cat") == 1 and photos.class_id(9) == 9
    with pytest.raises(ValueError, match="unknown photos class 'dog'"):
        photos.class_id("dog")
    with pytest.raises(ValueError, match="out of range"):
        photos.class_id(10)
    with pytest.raises(TypeError, match="name or an int"):
        photos.class_id(1.5)
    with pytest.raises(ValueError, match="per_class must be a positive"):
        photos.train_crops(0)


def test_reconstruction_table_of_the_identity_and_of_noise():
    crops = photos.heldout_crops(rows=1, cols=1)
    perfect = photos.reconstruction_table(lambda x: x, crops)
    assert perfect["ssim"] > 0.999 and perfect["psnr_db"] > 60 and set(perfect["classes"]) == set(photos.PHOTO_CLASSES)
    blurred = photos.reconstruction_table(lambda x: torch.nn.functional.avg_pool2d(x, 5, 1, 2), crops)
    assert 10 < blurred["psnr_db"] < perfect["psnr_db"] and blurred["ssim"] < 0.95


def test_training_recipe_in_miniature_writes_a_loadable_float16_model(tmp_path):
    """`python -m invlab.train photos`'s code path with 2 optimiser steps: float16 safetensors, a card's
    numbers in the json, and a model that loads by ``weights_dir`` and round-trips shapes."""
    import json

    from safetensors import safe_open

    import invlab
    from invlab.train import TrainConfig, VAEConfig, train_photos

    meta = train_photos(tmp_path, TrainConfig(steps=2, batch_size=4, threads=1), VAEConfig(steps=2, batch_size=4, threads=1),
                        per_class=2)
    assert meta["vae"]["storage_dtype"] == "float16" and meta["vae"]["heldout"]["n"] == 80
    with safe_open(str(tmp_path / "photos_unet.safetensors"), "pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.float16}
    card = json.loads((tmp_path / "photos_unet.json").read_text())
    assert card["classes"] == list(photos.PHOTO_CLASSES) and card["num_classes"] == 10
    model = invlab.models.tiny.photos(weights_dir=tmp_path)
    assert model.image_shape == (3, 64, 64) and model.sample_shape == (4, 16, 16) and model.dtype == torch.float32
    z = model.encode(photos.heldout_crops(rows=1, cols=1).images[:2])
    assert z.shape == (2, 4, 16, 16) and model.decode(z).shape == (2, 3, 64, 64)
    # --vae-from: the VAE is reused and the UNet comes out as the full run's, bit for bit
    again = tmp_path / "again"
    train_photos(again, TrainConfig(steps=2, batch_size=4, threads=1), VAEConfig(steps=2, batch_size=4, threads=1),
                 per_class=2, vae_from=tmp_path)
    from safetensors.torch import load_file

    a, b = load_file(str(tmp_path / "photos_unet.safetensors")), load_file(str(again / "photos_unet.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert (again / "photos_vae.json").read_text() == (tmp_path / "photos_vae.json").read_text()
    with pytest.raises(ValueError, match="trained on other crops"):
        train_photos(tmp_path / "x", TrainConfig(steps=1, batch_size=4, threads=1), VAEConfig(steps=1, threads=1),
                     per_class=3, vae_from=tmp_path)
