"""The URLs of the app's own routes (served by server.py), in a module that imports nothing, so that
the pages and components that link to them need not import the server."""

LIVE_URL = "lenet/runs/{run_id}/live"
PLOTLY_URL = "lenet/plotly.min.js"
HEALTH_URL = "lenet/health"
ORT_URL = "lenet/ort/"                     # + one of onnx_models.ORT_FILES
ONNX_URL = "lenet/onnx/{source}/{name}.onnx"  # source: shipped or run; ?v= the checkpoint's version
