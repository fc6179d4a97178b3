"""Training throughput: plain fastai `vision_learner(...).fit_one_cycle` vs `train_classifier` (CPU fast path), in one run.

Same data (digits 3 vs 7), arch, image size, batch size, epochs, schedule and seed; from scratch (no weights offline).
Prints the CPU flags that matter, images/s of each, the ratio, and both error rates.

    python bench/bench_training.py [--size 192] [--epochs 3] [--bs 32] [--arch resnet18]
"""
import argparse, contextlib, io, tempfile, time
from pathlib import Path
from fastai.vision.all import *
from fastlessons.datasets import digits_dataset
from fastlessons.training import image_datablock, train_classifier, cpu_flags, cpu_fast_bf16, resolve_arch

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
    learn = vision_learner(dls, resolve_arch(arch), pretrained=False, metrics=error_rate)
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

if __name__ == '__main__':
    p = argparse.ArgumentParser()
    p.add_argument('--size', type=int, default=192); p.add_argument('--epochs', type=int, default=3)
    p.add_argument('--bs', type=int, default=32); p.add_argument('--arch', default='resnet18')
    p.add_argument('--lr', type=float, default=3e-3); p.add_argument('--seed', type=int, default=42)
    a = p.parse_args()
    print('CPU flags:', ' '.join(f"{k}={'yes' if v else 'no'}" for k,v in cpu_flags().items()),
          f'| fast bf16: {cpu_fast_bf16()} | torch threads: {torch.get_num_threads()}')
    path = digits_dataset(Path(tempfile.mkdtemp())/'digits', classes=(3,7))
    args = (path, a.arch, a.epochs, a.size, a.bs, a.lr, a.seed)
    print(f'{a.arch}, {a.size} px, batch {a.bs}, {a.epochs} epochs, digits 3 vs 7 from scratch')
    b_ips, b_err = baseline(*args)
    print(f'baseline fastai fit:         {b_ips:7.1f} img/s   error_rate {b_err:.3f}', flush=True)
    o_ips, o_err = ours(*args)
    print(f'train_classifier fast path:  {o_ips:7.1f} img/s   error_rate {o_err:.3f}')
    print(f'ratio: {o_ips/b_ips:.2f}x')
