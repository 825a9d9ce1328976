"""Tiny datasets written on the fly, in the formats the real configs read.

Test helpers for the end-to-end runs of the SASE (arXiv 2411.08333)
downstream configs: a COCO-format detection / instance-segmentation set
(images with drawn shapes, boxes, polygon masks and a valid instances json)
and an ImageNet-format classification set (mmpretrain's layout: image
folders plus ``meta/{train,val}.txt``). Deterministic for a given seed.
"""
import json
import math
import os
import os.path as osp
from typing import Dict, List, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw

# The 80 COCO category names in mmdet's order; a json listing all of them
# lets the real 80-class configs and CocoMetric run unchanged (they map label
# i to the i-th listed category).
COCO_CLASSES = (
    'person', 'bicycle', 'car', 'motorcycle', 'airplane', 'bus', 'train',
    'truck', 'boat', 'traffic light', 'fire hydrant', 'stop sign',
    'parking meter', 'bench', 'bird', 'cat', 'dog', 'horse', 'sheep', 'cow',
    'elephant', 'bear', 'zebra', 'giraffe', 'backpack', 'umbrella', 'handbag',
    'tie', 'suitcase', 'frisbee', 'skis', 'snowboard', 'sports ball', 'kite',
    'baseball bat', 'baseball glove', 'skateboard', 'surfboard',
    'tennis racket', 'bottle', 'wine glass', 'cup', 'fork', 'knife', 'spoon',
    'bowl', 'banana', 'apple', 'sandwich', 'orange', 'broccoli', 'carrot',
    'hot dog', 'pizza', 'donut', 'cake', 'chair', 'couch', 'potted plant',
    'bed', 'dining table', 'toilet', 'tv', 'laptop', 'mouse', 'remote',
    'keyboard', 'cell phone', 'microwave', 'oven', 'toaster', 'sink',
    'refrigerator', 'book', 'clock', 'vase', 'scissors', 'teddy bear',
    'hair drier', 'toothbrush')


def _polygon_area(xy: Sequence[float]) -> float:
    x, y = np.asarray(xy[0::2]), np.asarray(xy[1::2])
    return float(abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))) / 2)


def _shape_polygon(rng: np.random.Generator, width: int,
                   height: int) -> List[float]:
    """A random rectangle, triangle or 12-gon 'ellipse' inside the image, as
    a flat COCO polygon [x0, y0, x1, y1, ...]."""
    w = rng.uniform(0.2, 0.5) * width
    h = rng.uniform(0.2, 0.5) * height
    x0 = rng.uniform(0, width - w)
    y0 = rng.uniform(0, height - h)
    kind = rng.integers(3)
    if kind == 0:
        pts = [(x0, y0), (x0 + w, y0), (x0 + w, y0 + h), (x0, y0 + h)]
    elif kind == 1:
        pts = [(x0 + w / 2, y0), (x0 + w, y0 + h), (x0, y0 + h)]
    else:
        cx, cy = x0 + w / 2, y0 + h / 2
        pts = [(cx + w / 2 * math.cos(t), cy + h / 2 * math.sin(t))
               for t in np.linspace(0, 2 * math.pi, 12, endpoint=False)]
    return [round(float(v), 2) for p in pts for v in p]


def make_coco_dataset(root: str, num_images: int = 2,
                      size: Tuple[int, int] = (160, 128),
                      splits: Sequence[str] = ('train2017', 'val2017'),
                      num_used_classes: int = 3, shapes_per_image: int = 3,
                      seed: int = 0) -> Dict[str, str]:
    """Writes a COCO-format dataset in mmdet's layout under ``root``.

    Layout (the same as ``data/coco`` for mmdet's configs)::

        root/annotations/instances_<split>.json
        root/<split>/000000000001.jpg ...

    Each image (``size`` = (width, height)) holds ``shapes_per_image``
    filled shapes; each shape is one annotation with its polygon
    ``segmentation``, ``bbox`` [x, y, w, h], ``area`` and ``iscrowd=0``,
    labelled with one of the first ``num_used_classes`` COCO categories. All
    80 categories are listed.

    Returns:
        dict: split name -> annotation file path.
    """
    rng = np.random.default_rng(seed)
    width, height = size
    categories = [dict(id=i + 1, name=n, supercategory='thing')
                  for i, n in enumerate(COCO_CLASSES)]
    os.makedirs(osp.join(root, 'annotations'), exist_ok=True)
    ann_files = {}
    img_id = ann_id = 0
    for split in splits:
        os.makedirs(osp.join(root, split), exist_ok=True)
        images, annotations = [], []
        for _ in range(num_images):
            img_id += 1
            file_name = f'{img_id:012d}.jpg'
            background = tuple(int(v) for v in rng.integers(0, 80, 3))
            img = Image.new('RGB', (width, height), background)
            draw = ImageDraw.Draw(img)
            for _ in range(shapes_per_image):
                ann_id += 1
                poly = _shape_polygon(rng, width, height)
                colour = tuple(int(v) for v in rng.integers(120, 256, 3))
                draw.polygon(poly, fill=colour)
                xs, ys = poly[0::2], poly[1::2]
                x0, y0 = min(xs), min(ys)
                annotations.append(dict(
                    id=ann_id, image_id=img_id,
                    category_id=int(rng.integers(num_used_classes)) + 1,
                    segmentation=[poly], area=_polygon_area(poly),
                    bbox=[x0, y0, max(xs) - x0, max(ys) - y0], iscrowd=0))
            img.save(osp.join(root, split, file_name), quality=95)
            images.append(dict(id=img_id, file_name=file_name, width=width,
                               height=height))
        ann_file = osp.join(root, 'annotations', f'instances_{split}.json')
        with open(ann_file, 'w') as f:
            json.dump(dict(images=images, annotations=annotations,
                           categories=categories, info={}, licenses=[]), f)
        ann_files[split] = ann_file
    return ann_files


def make_imagenet_dataset(root: str, num_classes: int = 3,
                          images_per_class: int = 2, size: int = 72,
                          seed: int = 0) -> Dict[str, str]:
    """Writes an ImageNet-format dataset in mmpretrain's layout::

        root/train/<wnid>/<wnid>_<k>.JPEG     root/meta/train.txt
        root/val/ILSVRC2012_val_<k>.JPEG      root/meta/val.txt

    The meta files hold ``relative/path label`` lines (labels index the
    1000 ImageNet classes, so only ``num_classes`` of them are used). Class
    ``c``'s images are tinted by a colour of their own, so a classifier can
    tell them apart.

    Returns:
        dict: split name -> meta file path.
    """
    rng = np.random.default_rng(seed)
    os.makedirs(osp.join(root, 'meta'), exist_ok=True)
    out = {}
    for split in ('train', 'val'):
        lines = []
        for c in range(num_classes):
            wnid = f'n{c:08d}'
            tint = np.array([(c * 97) % 256, (c * 53 + 80) % 256,
                             (c * 31 + 160) % 256], dtype=np.float32)
            for k in range(images_per_class):
                noise = rng.uniform(0, 60, (size, size, 3))
                arr = np.clip(tint * 0.75 + noise, 0, 255).astype(np.uint8)
                if split == 'train':
                    rel = f'{wnid}/{wnid}_{k}.JPEG'
                else:
                    rel = f'ILSVRC2012_val_{c * images_per_class + k:08d}.JPEG'
                path = osp.join(root, split, rel)
                os.makedirs(osp.dirname(path), exist_ok=True)
                Image.fromarray(arr).save(path, format='JPEG')
                lines.append(f'{rel} {c}')
        meta = osp.join(root, 'meta', f'{split}.txt')
        with open(meta, 'w') as f:
            f.write('\n'.join(lines) + '\n')
        out[split] = meta
    return out


def make_image_folder(root: str, num_classes: int = 2,
                      images_per_class: int = 4, size: int = 32,
                      split: str = 'train', seed: int = 0) -> str:
    """Writes an image folder in mmpretrain ``CustomDataset``'s layout
    (no annotation file: one sub-folder per class)::

        root/<split>/n00000000/0.JPEG ...

    Class ``c``'s images are tinted by a colour of their own (as in
    :func:`make_imagenet_dataset`). Returns ``root``.
    """
    rng = np.random.default_rng(seed)
    for c in range(num_classes):
        folder = osp.join(root, split, f'n{c:08d}')
        os.makedirs(folder, exist_ok=True)
        tint = np.array([(c * 97) % 256, (c * 53 + 80) % 256,
                         (c * 31 + 160) % 256], dtype=np.float32)
        for k in range(images_per_class):
            noise = rng.uniform(0, 60, (size, size, 3))
            arr = np.clip(tint * 0.75 + noise, 0, 255).astype(np.uint8)
            Image.fromarray(arr).save(osp.join(folder, f'{k}.JPEG'),
                                      format='JPEG')
    return root
