"""LeNet Lab's engine: LeNet-5 and its variations, data, training, activations.

Nothing in here imports Streamlit: the dashboard, the CLI and the tests all
stand on the same functions."""
from .activations import activations, conv_filters, predict_proba
from .checkpoint import Checkpoint, CheckpointError, list_runs, load_checkpoint, load_run, save_checkpoint, save_run
from .data import DATASETS, DataUnavailableError, ImageData, load_dataset
from .model import PRESETS, ConfigError, LeNet, ModelConfig, layer_summary, preset
from .train import Callback, EpochMetrics, Snapshot, Trainer, TrainConfig, TrainingJob, build_model, evaluate

__all__ = [n for n in dir() if not n.startswith("_")]
