"""LeNet Lab's engine: LeNet-5 and its variations (model), data, training (train), run folders
(runs), the processes that train them (worker, executors), activations and checkpoints.

Nothing in here imports Streamlit: the dashboard, the CLI and the tests all stand on the same
functions. Import the modules themselves, e.g. `from lenet_core.model import LeNet`."""
