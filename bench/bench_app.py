"""Benchmark the app's runtime (ONNX + onnxruntime, `fastlessons.app`) against fastai's `load_learner(...).predict`, in one run.

1. Cold start: from process start to the first answer, in a new Python process each time.
   fastai: `load_learner('export.pkl').predict(PILImage.create(img))`, the course's app;
   ours: `load_classifier('model.onnx').predict(img)`.
   Then the console command, the same way: `fastlessons-predict export.pkl IMG` (fastai) against
   `fastlessons-predict model.json IMG` (which answers from the `model.onnx` beside it).
2. Per image: `predict` on the same images in one process, after a warm-up, fastai against ours;
   and the largest difference between the two sets of probabilities.

The model is a resnet18 for the embedded digits (3 against 7), trained one epoch from scratch at `--size`
(the time per image does not depend on how well it is trained). Everything is written to a temporary
folder, removed at the end. Usage: python bench/bench_app.py [--size 192] [--n 50] [--repeat 3]
"""
import argparse, os, subprocess, sys, tempfile, time, shutil, warnings
from pathlib import Path


def first_answer(cmd, cwd):
    "Seconds from starting `cmd` to its first line of output, and that line."
    t = time.perf_counter()
    p = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = p.stdout.readline()
    dt = time.perf_counter() - t
    p.communicate()
    if p.returncode: raise RuntimeError(f"{cmd} failed with code {p.returncode}")
    return dt, line.strip()


def best(cmd, cwd, repeat):
    "The fastest of `repeat` cold starts of `cmd`, and its answer."
    runs = [first_answer(cmd, cwd) for _ in range(repeat)]
    return min(r[0] for r in runs), runs[0][1]


def per_image(f, imgs, warmup=3):
    "Median seconds per call of `f` over `imgs`, after `warmup` calls."
    for im in imgs[:warmup]: f(im)
    ts = []
    for im in imgs:
        t = time.perf_counter(); f(im); ts.append(time.perf_counter() - t)
    return sorted(ts)[len(ts)//2]


def ratio_line(name, base, ours, unit='s', scale=1):
    print(f"{name}: fastai {base*scale:.3g} {unit}, ONNX runtime {ours*scale:.3g} {unit}, ratio {base/ours:.1f}x")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--size', type=int, default=192, help='image size the model is trained at (the course: 192)')
    ap.add_argument('--n', type=int, default=50, help='images for the time per image')
    ap.add_argument('--repeat', type=int, default=3, help='cold starts of each; the fastest is reported')
    a = ap.parse_args()

    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        from fastai.vision.all import load_learner, PILImage
        from fastlessons.datasets import digits_dataset
        from fastlessons.training import train_classifier
        from fastlessons.core import cpu_flags
        from fastlessons.inference import export_safe
        from fastlessons.onnx_export import export_onnx
        from fastlessons.app import load_classifier
    import numpy as np, onnxruntime, torch

    tmp = Path(tempfile.mkdtemp(prefix='bench_app_'))
    try:
        path = digits_dataset(tmp/'digits', classes=(3, 7))
        learn = train_classifier(path, size=a.size, epochs=1, pretrained=False, progress=False, num_workers=0)
        learn.path = tmp
        learn.export('export.pkl'); export_safe(learn, 'model.json'); export_onnx(learn, 'model.onnx')
        imgs = sorted(path.rglob('*.png'))[:a.n]
        img = str(imgs[0])
        flags = cpu_flags()
        model_name = next((l.split(':', 1)[1].strip() for l in Path('/proc/cpuinfo').read_text().splitlines() if l.startswith('model name')), '?') \
                     if Path('/proc/cpuinfo').exists() else '?'
        print(f"CPU: {model_name}; {os.cpu_count()} cores; flags: {', '.join(k for k,v in flags.items() if v) or 'none of ' + ', '.join(flags)}")
        print(f"torch {torch.__version__} ({torch.get_num_threads()} threads), onnxruntime {onnxruntime.__version__}; "
              f"resnet18 at {a.size}×{a.size} px; load average {os.getloadavg()[0]:.1f} (other work on this machine inflates every figure)")

        py, bindir = sys.executable, Path(sys.executable).parent
        base_code = ("import warnings; warnings.simplefilter('ignore')\nfrom fastai.vision.all import load_learner, PILImage\n"
                     f"learn = load_learner('export.pkl')\nwith learn.no_bar(): print(learn.predict(PILImage.create({img!r}))[0], flush=True)")
        ours_code = f"from fastlessons.app import load_classifier\nprint(load_classifier('model.onnx').predict({img!r})[0], flush=True)"
        tb, ab = best([py, '-c', base_code], tmp, a.repeat)
        to, ao = best([py, '-c', ours_code], tmp, a.repeat)
        assert ab == ao, (ab, ao)
        print(f"\n1. Cold start, process start to first answer (fastest of {a.repeat}):")
        ratio_line("   Python: load_learner().predict vs load_classifier().predict", tb, to)
        tb, ab = best([str(bindir/'fastlessons-predict'), 'export.pkl', img], tmp, a.repeat)
        to, ao = best([str(bindir/'fastlessons-predict'), 'model.json', img], tmp, a.repeat)
        assert ab.split('\t')[1] == ao.split('\t')[1], (ab, ao)
        ratio_line("   fastlessons-predict: export.pkl vs model.json (+ model.onnx)", tb, to)
        print(f"   fastlessons-predict model.json: {to:.2f} s to the first answer (goal: at most 3 s)")

        with warnings.catch_warnings():
            warnings.simplefilter('ignore')   # load_learner's warning about pickles: the point of the comparison, but noise here
            learn_inf = load_learner(tmp/'export.pkl')
        clf = load_classifier(tmp/'model.onnx')
        with learn_inf.no_bar():
            tb = per_image(lambda f: learn_inf.predict(PILImage.create(f)), imgs)
            diff = max(float(np.abs(learn_inf.predict(PILImage.create(f))[2].numpy() - clf.predict(f)[2]).max()) for f in imgs)
        to = per_image(clf.predict, imgs)
        print(f"\n2. Per image, in one process (median of {len(imgs)}, from the file to the probabilities):")
        ratio_line("   learn.predict vs Classifier.predict", tb, to, 'ms', 1000)
        print(f"   largest difference between their probabilities: {diff:.1e}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == '__main__': main()
