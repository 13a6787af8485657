"""Process-wide settings for the Streamlit server (kept light: app.py imports it)."""
import gc
import threading

_frozen = False
_warm_up: threading.Thread | None = None
_warm_up_lock = threading.Lock()


def freeze_long_lived_objects() -> None:
    """Keep garbage collection from walking every module's objects.

    With torch, plotly and streamlit loaded a full collection walks ~240k objects: 120 ms on an
    idle core, 300-800 ms measured on the shared build machine, all of it holding the GIL while
    a training thread or a canvas stroke waits. Streamlit's own collection after every script
    run is off (runner.postScriptGC in .streamlit/config.toml); Python's automatic one still
    runs. gc.freeze() moves the objects alive now (modules, shipped models) to a permanent
    generation the collector skips; objects made later are still collected. Once per process,
    after the first page has run and imported what it needs."""
    global _frozen
    if not _frozen:
        _frozen = True
        gc.freeze()


def warm_up_training() -> threading.Thread:
    """Do, in the background, the one-off work of a process's first training run.

    PyTorch imports its compiler stack (torch._dynamo) the first time any optimizer is made:
    about 1 s on the build machine, which made the first Start wait about 2 s for its first
    point while later runs took a fraction of a second. Started when the Train page is first
    shown, the import is done by the time Start is pressed; the objects it made are frozen
    like the rest. Once per process; returns the thread."""
    global _warm_up
    with _warm_up_lock:
        if _warm_up is None:
            def work():
                import torch

                torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
                gc.freeze()

            _warm_up = threading.Thread(target=work, name="lenet-warm-up", daemon=True)
            _warm_up.start()
        return _warm_up
