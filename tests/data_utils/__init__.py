"""Test helpers: tiny datasets in the formats sase_mm's configs read."""
from .tiny_datasets import (COCO_CLASSES, make_coco_dataset,
                            make_imagenet_dataset)

__all__ = ['COCO_CLASSES', 'make_coco_dataset', 'make_imagenet_dataset']
