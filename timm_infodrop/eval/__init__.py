"""Evaluation: benchmark scores, shape bias, corruptions, PGD."""
from .metrics import predict, shape_bias, top1
