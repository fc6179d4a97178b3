"""Training on a CPU: plain fastai (the course's way) against fastlessons, in one run, with the CPU flags that matter.

Default: throughput. Plain fastai `vision_learner(...).fit_one_cycle` against `train_classifier`'s CPU fast path, on the
same data (digits 3 vs 7), arch, image size, batch size, epochs, schedule and seed, from scratch (no weights offline).
Prints images/s of each, the ratio, and both error rates.

    python bench/bench_training.py [--size 192] [--epochs 3] [--bs 32] [--arch resnet18]

`--lesson`: the lesson's own lines, `vision_learner(dls, resnet18, metrics=error_rate); learn.fine_tune(3)` on the
lesson's `DataBlock` (192 px, batches of 64), offline, for each seed (fastai's `set_seed`): fastai's `vision_learner`
with `pretrained=False` and its `fine_tune` (frozen random body), against `fastlessons`' (`trained_from='scratch'`:
all layers, one cycle, on the CPU fast path). Prints error rate and seconds of each, per seed. `--bf16 off` forces
fp32 on fastlessons' side, as on a CPU without fast bf16.

    python bench/bench_training.py --lesson [--seeds 0,1,2] [--bf16 off] [--threads 2]
"""
import argparse, contextlib, io, os, tempfile, time
from pathlib import Path
from fastai.vision.all import *
from fastai.vision import learner as fastai_learner
from fastcore.xtras import modified_env
from fastlessons.datasets import digits_dataset
from fastlessons.core import cpu_flags, cpu_fast_bf16
from fastlessons.training import (image_datablock, train_classifier, resolve_arch,
                                  vision_learner, CPUFastPath)

class Timer(Callback):
    "Seconds spent in training batches (not validation) and images seen."
    order = -100
    def before_fit(self): self.secs, self.n = 0., 0
    def before_train(self): self.t0 = time.perf_counter()
    def after_batch(self):
        if self.training: self.n += find_bs(self.yb)
    def after_train(self): self.secs += time.perf_counter() - self.t0

def baseline(path, arch, epochs, size, bs, lr, seed):
    "Plain fastai: the lesson's DataBlock, `vision_learner(pretrained=False)`, `fit_one_cycle`, no fast path."
    set_seed(seed)
    dls = image_datablock(size, seed=seed).dataloaders(path, bs=bs, num_workers=0)
    dls.add_tfms([Normalize.from_stats(*imagenet_stats)], 'after_batch')
    learn = fastai_learner.vision_learner(dls, resolve_arch(arch), pretrained=False, metrics=error_rate)
    t = Timer()
    with learn.no_bar(), learn.no_logging(): learn.fit_one_cycle(epochs, lr, cbs=t)
    with learn.no_bar(): err = float(learn.validate()[1])
    return t.n/t.secs, err

def ours(path, arch, epochs, size, bs, lr, seed):
    t = Timer()
    with contextlib.redirect_stdout(io.StringIO()):
        learn = train_classifier(path, arch=arch, epochs=epochs, size=size, bs=bs, lr=lr, seed=seed, pretrained=False,
                                 num_workers=0, progress=False, cbs=t)
    ips = t.n/t.secs  # read before `validate`, which fires `before_fit` again and so resets the timer
    with learn.no_bar(): err = float(learn.validate()[1])
    return ips, err

def lesson(path, seed, make_learner, cbs=None):
    "The lesson's lines with `make_learner` as `vision_learner`: (error rate, seconds of `fine_tune`)."
    set_seed(seed)
    dls = DataBlock(blocks=(ImageBlock, CategoryBlock), get_items=get_image_files,
                    splitter=RandomSplitter(valid_pct=0.2, seed=42), get_y=parent_label,
                    item_tfms=[Resize(192, method='squish')]).dataloaders(path)
    with contextlib.redirect_stdout(io.StringIO()): learn = make_learner(dls, resnet18, metrics=error_rate)
    t0 = time.perf_counter()
    with learn.no_bar(), learn.no_logging(), contextlib.redirect_stdout(io.StringIO()): learn.fine_tune(3, cbs=cbs)
    secs = time.perf_counter() - t0
    with learn.no_bar(): err = float(learn.validate()[1])
    return err, secs

def main_lesson(a, path):
    bf16 = {'auto': None, 'on': True, 'off': False}[a.bf16]
    fastai_fine_tune = Learner.fine_tune.fastai_fine_tune
    print(f"lesson 1's lines on digits 3 vs 7 (192 px, batches of 64), offline; fastlessons bf16: {a.bf16}")
    for seed in map(int, a.seeds.split(',')):
        with patch_to_fastai(fastai_fine_tune):
            b_err,b_secs = lesson(path, seed, lambda dls, arch, **kw: fastai_learner.vision_learner(dls, arch, pretrained=False, **kw))
        o_err,o_secs = lesson(path, seed, vision_learner, cbs=CPUFastPath(bf16=bf16))
        print(f'seed {seed}: fastai fine_tune (frozen random body) error_rate {b_err:.3f} in {b_secs:5.1f} s | '
              f'fastlessons error_rate {o_err:.3f} in {o_secs:5.1f} s', flush=True)

@contextlib.contextmanager
def patch_to_fastai(fastai_fine_tune):
    "fastai's own `Learner.fine_tune` inside the block."
    ours = Learner.fine_tune
    Learner.fine_tune = fastai_fine_tune
    try: yield
    finally: Learner.fine_tune = ours

if __name__ == '__main__':
    p = argparse.ArgumentParser()
    p.add_argument('--size', type=int, default=192); p.add_argument('--epochs', type=int, default=3)
    p.add_argument('--bs', type=int, default=32); p.add_argument('--arch', default='resnet18')
    p.add_argument('--lr', type=float, default=3e-3); p.add_argument('--seed', type=int, default=42)
    p.add_argument('--lesson', action='store_true'); p.add_argument('--seeds', default='0,1,2')
    p.add_argument('--bf16', default='auto', choices=['auto', 'on', 'off']); p.add_argument('--threads', type=int, default=None)
    a = p.parse_args()
    if a.threads: torch.set_num_threads(a.threads)
    print('CPU flags:', ' '.join(f"{k}={'yes' if v else 'no'}" for k,v in cpu_flags().items()),
          f'| fast bf16: {cpu_fast_bf16()} | torch threads: {torch.get_num_threads()} | load average: {os.getloadavg()[0]:.1f}')
    path = digits_dataset(Path(tempfile.mkdtemp())/'digits', classes=(3,7))
    with modified_env(FASTLESSONS_OFFLINE='1'):
        if a.lesson: main_lesson(a, path)
        else:
            args = (path, a.arch, a.epochs, a.size, a.bs, a.lr, a.seed)
            print(f'{a.arch}, {a.size} px, batch {a.bs}, {a.epochs} epochs, digits 3 vs 7 from scratch')
            b_ips, b_err = baseline(*args)
            print(f'baseline fastai fit:         {b_ips:7.1f} img/s   error_rate {b_err:.3f}', flush=True)
            o_ips, o_err = ours(*args)
            print(f'train_classifier fast path:  {o_ips:7.1f} img/s   error_rate {o_err:.3f}')
            print(f'ratio: {o_ips/b_ips:.2f}x')
    print(f'load average at the end: {os.getloadavg()[0]:.1f}')
