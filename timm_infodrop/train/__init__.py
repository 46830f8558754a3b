"""Training: the trainer (:func:`train` with a :class:`TrainConfig`), its loops on timm's pieces, safetensors
training state, torchrun process groups."""
from .config import RecipeError, TrainConfig, load_recipe
from .distributed import DistributedContext, cleanup_distributed, setup_distributed
from .loop import EpochStats, grad_scaler, prepare_for_training, train_one_epoch, validate
from .state import TrainingState, load_training_state, save_training_state
from .trainer import STATE_FILE, TrainResult, save_model_folder, train
