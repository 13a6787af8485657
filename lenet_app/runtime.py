"""Process-wide settings for the Streamlit server (kept light: app.py imports it)."""
import gc

_frozen = False


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
