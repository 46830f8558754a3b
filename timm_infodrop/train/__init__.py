"""Training: loops on timm's pieces, safetensors training state, torchrun process groups."""
from .distributed import DistributedContext, cleanup_distributed, setup_distributed
from .loop import (EpochStats, FitConfig, FitResult, fit, grad_scaler, prepare_for_training, train_one_epoch,
                   validate)
from .state import TrainingState, load_training_state, save_training_state
