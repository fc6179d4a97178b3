"""The tests' one model: the handwritten digits (scikit-learn's, shipped with the package) and a small classifier
trained on them from scratch, seeded, in a folder of the caller's. Not part of the package.

A notebook beside this file imports it (`from digits_fixture import tiny_learner`); a library notebook in `nbs/api`
loads it by path, `runpy.run_path('../tests/digits_fixture.py')`, so that its import cells stay plain imports."""
from pathlib import Path

__all__ = ['tiny_learner']

def tiny_learner(dest, # A folder of the test's own: the digits go into `dest/digits`, and `learn.path` is `dest`
                 classes=(3, 7), # The digits to tell apart
                 epochs:int=1, # Epochs of training
                 size:int=32, # Image side in pixels: small, so the training takes seconds
                 bs:int|None=32, # Batch size
                 **kwargs, # Passed on to `train_classifier`, e.g. `fast=False`
                )->tuple: # `(path, learn)`: the dataset's folder and the trained learner
    "The digits `classes` in `dest/digits`, and a resnet18 trained on them from scratch (seeded: `train_classifier`'s seed 42)."
    from fastlessons.datasets import digits_dataset
    from fastlessons.training import train_classifier
    dest = Path(dest)
    path = digits_dataset(dest/'digits', classes=classes)
    learn = train_classifier(path, size=size, epochs=epochs, bs=bs, pretrained=False, progress=False, num_workers=0, **kwargs)
    learn.path = dest
    return path, learn
