"""The protocol client of the load benchmark (benchmarks/st_client.py) against the real server:
one session opens the Draw page, draws a 7, clears, draws a 1, and gets the shipped digit model's
answer each time. Keeps the client honest as Streamlit and the page change."""
import asyncio
import concurrent.futures
import io
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from draw_page import DIGITS, DrawTab  # noqa: E402
from st_client import FINISHED_OK, Session, canvas_png  # noqa: E402

from lenet_core.activations import predict_proba  # noqa: E402
from lenet_core.checkpoint import load_checkpoint  # noqa: E402
from lenet_core.preprocess import digit_from_rgba, image_to_tensor  # noqa: E402

DIGITS_CKPT = Path(__file__).resolve().parents[1] / "models" / "digits" / "checkpoint.pt"


def expected_label(strokes) -> str:
    """What the Draw page's default model says for this drawing, computed outside the app."""
    rgba = np.asarray(Image.open(io.BytesIO(canvas_png(strokes))).convert("RGBA"))
    model = load_checkpoint(DIGITS_CKPT).model.eval()
    return str(int(predict_proba(model, image_to_tensor(digit_from_rgba(rgba)))[0].argmax()))


async def draw_seven_then_one(url: str):
    answers = []
    async with Session(url, timeout=30) as s:
        tab = DrawTab(s)
        await tab.open()
        assert s.widget("selectbox").proto.label == "Model"  # its state is sent back with each stroke
        for i, digit in enumerate(["7", "1"]):
            if i:
                await tab.clear()
            request = await tab.draw(DIGITS[digit])
            answer = await tab.wait_answer(request)
            run = await s.wait_finished(request)
            answers.append((digit, answer.label, answer.update, run.status))
        assert s.errors == [], s.errors
        assert s.closed is None
    return answers


def test_a_protocol_session_gets_the_drawings_predictions(app_server):
    # In a thread of its own: Playwright's sync API (the browser tests) keeps an event loop in this one.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        answers = pool.submit(asyncio.run, asyncio.wait_for(draw_seven_then_one(app_server.url), 120)).result()
    assert [a[0] for a in answers] == [a[1] for a in answers] == [expected_label(DIGITS[d]) for d in "71"]
    assert [a[2] for a in answers] == [1, 2]  # data-update counts the drawings received
    assert all(a[3] == FINISHED_OK for a in answers)
