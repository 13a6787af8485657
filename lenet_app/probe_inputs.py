"""Inputs for the curious, on Draw: a blank image, noise, and the drawing inverted, shifted and
rotated, each with what the model says of it. A model trained on centred white-on-black digits
can be surprisingly sure about things that are not digits at all."""
from __future__ import annotations

import numpy as np
import streamlit as st
from PIL import Image

from lenet_core.preprocess import image_to_tensor

from . import maps


def variants(image: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """(what it is, 28x28 image in [0, 1]) for each probe input made from the drawing."""
    noise = np.random.default_rng(0).random((28, 28)).astype(np.float32)
    rotated = np.asarray(Image.fromarray(image).rotate(30, resample=Image.Resampling.BILINEAR), dtype=np.float32)
    return [("blank", np.zeros((28, 28), np.float32)), ("noise", noise), ("inverted", 1 - image),
            ("shifted 6 px right", np.roll(image, 6, axis=1) * (np.arange(28) >= 6)),
            ("rotated 30°", np.clip(rotated, 0, 1))]


def show(model, image: np.ndarray, classes) -> None:
    for col, (what, x) in zip(st.columns(5), variants(image)):
        _, probs = maps.forward(model, image_to_tensor(x))
        best = int(probs[0].argmax())
        # A grey frame: the inverted drawing is a white field, which would vanish into the white page.
        col.image(np.pad(maps.upscale(x, 3), 2, constant_values=0.5), width=84, clamp=True)
        col.markdown(f"{what}: **{classes[best]}** ({probs[0, best]:.0%})")
