"""Benchmark data-parallel training: images per second for 1 process and for N processes, in one run.

Each run is `train_classifier` on all ten embedded digits (1,797 images, 1,438 for training), from scratch, at
`--size` pixels for `--epochs` epochs, started by `torchrun --standalone --nproc-per-node N` (one machine, a free
port). On CPUs every run gets all the cores: each of N processes gets `OMP_NUM_THREADS` = cores/N threads (torchrun's
default would be one each); on GPUs, each process gets one GPU. Throughput is training images per second of the fit (its per-epoch validation
included), from the `training_record` that `model.json` also keeps; the ratio is N processes against 1.

On a CPU the N processes share the cores that one process uses, so expect little gain on a small machine:
the point there is that it runs. With GPUs (`--nproc 1,2,4` on a machine with 4), each process has its own.
Everything is written to a temporary folder, removed at the end.
Usage: python bench/bench_distributed.py [--nproc 1,2] [--size 64] [--epochs 3]
"""
import argparse, json, os, subprocess, sys, tempfile, warnings
from pathlib import Path


def worker(a):
    "One process of a launched run: train, and on rank 0 print the training record as JSON."
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        from fastlessons.training import train_classifier
        from fastai.torch_core import rank_distrib
    learn = train_classifier(Path(a.data), epochs=a.epochs, size=a.size, pretrained=False, progress=False)
    if rank_distrib() == 0:
        rec = dict(learn.training_record, n_train=len(learn.dls.train_ds))
        print('RECORD ' + json.dumps(rec), flush=True)


def launch(n, a, data):
    "Run `n` processes under torchrun; the record rank 0 printed."
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', f'--nproc-per-node={n}', __file__,
           '--worker', '--data', str(data), '--size', str(a.size), '--epochs', str(a.epochs)]
    env = {**os.environ, 'OMP_NUM_THREADS': str(max(1, (os.cpu_count() or 1)//n))}   # the same cores for every n
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if res.returncode: raise RuntimeError(f"{n} processes failed:\n{res.stderr[-3000:]}")
    line = [l for l in res.stdout.splitlines() if l.startswith('RECORD ')]
    return json.loads(line[0][len('RECORD '):])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--nproc', default='1,2', help='comma-separated numbers of processes; the first is the baseline')
    ap.add_argument('--size', type=int, default=64, help='image size (from scratch on the digits: 64)')
    ap.add_argument('--epochs', type=int, default=3)
    ap.add_argument('--worker', action='store_true', help=argparse.SUPPRESS)
    ap.add_argument('--data', help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker: return worker(a)

    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        import torch, fastai, platform
        from fastlessons.datasets import digits_dataset
        from fastlessons.core import cpu_flags
    gpus = torch.cuda.device_count()
    print(f"python {platform.python_version()}, torch {torch.__version__}, fastai {fastai.__version__}; "
          f"{os.cpu_count()} CPU cores, flags: {' '.join(f for f,on in cpu_flags().items() if on) or 'none of avx2, avx512f, avx512_bf16, amx'}; "
          f"{gpus} GPU(s){': ' + torch.cuda.get_device_name(0) if gpus else ''}")
    with tempfile.TemporaryDirectory() as tmp:
        data = digits_dataset(Path(tmp)/'digits')
        base = None
        for n in [int(x) for x in a.nproc.split(',')]:
            r = launch(n, a, data)
            ips = r['n_train']*r['epochs']/r['train_s']
            base = base or ips
            print(f"{n} process(es): {r['epochs']} epochs of {r['batches_per_epoch']} batches per process, "
                  f"{r['train_s']:.1f} s, {ips:.0f} images/s, error {r.get('error_rate', float('nan')):.1%}; "
                  f"ratio to {a.nproc.split(',')[0]}: {ips/base:.2f}x")


if __name__ == '__main__': main()
