"""Data: the synthetic shape-vs-texture benchmark."""
from .benchmark import DEFAULT_SPLIT_SIZES, ShapesDataset, class_names, contact_sheet, write_benchmark, write_split
from .shapes import SHAPES, SPLITS, TEXTURES, ShapesConfig, sample
