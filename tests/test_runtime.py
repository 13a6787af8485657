"""lenet_app.runtime: the process-wide tweaks behind the app's speed."""
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_python(code: str) -> subprocess.CompletedProcess:
    """In a fresh interpreter: what a module has already imported must not leak in from other tests."""
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)


def test_warm_up_imports_what_the_first_optimizer_needs_once_and_in_the_background():
    r = run_python("""
        import sys, threading
        import lenet_core.train  # what the Train page has imported before it calls warm_up_training
        from lenet_app.runtime import warm_up_training
        assert "torch._dynamo" not in sys.modules, "nothing to warm up: the test proves nothing"
        thread = warm_up_training()
        assert thread is not threading.current_thread() and thread.daemon
        assert warm_up_training() is thread, "a second call must not start a second thread"
        thread.join(60)
        assert not thread.is_alive()
        print("dynamo" if "torch._dynamo" in sys.modules else "missing")
    """)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "dynamo"


def test_streamlit_config_turns_off_the_collection_after_every_script_run():
    r = run_python("""
        from streamlit import config
        config.get_config_options(force_reparse=True)
        print(config.get_option("runner.postScriptGC"))
    """)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False"
