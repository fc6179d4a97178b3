"""Benchmark fastlessons.download and fastlessons.images against plain fastai, in one run, printing both figures and the ratio.

1. Download: 300 distinct JPEGs from a loopback HTTP server that waits 100 ms before each response.
   fastai `download_images(dest, urls=...)` (its defaults: 8 threads) vs `fastlessons.download.download_images`.
2. Verify + resize: 300 JPEGs of 1600×1200 to 400 px on the longest side.
   fastai `verify_images(get_image_files(p))` + `resize_images(p, max_size=400, dest=p)` vs
   `fastlessons.images.verify_resize(p, 400)`.

Usage: python bench/bench_images.py [--n 300] [--latency 0.1] [--repeat 1]
Everything is written to a temporary folder, removed at the end; only 127.0.0.1 is contacted.
The server runs in its own process, so that it does not share the GIL with the downloader being timed.
"""
import argparse, io, os, shutil, sys, tempfile, time
import multiprocessing as mp
from http.server import ThreadingHTTPServer, BaseHTTPRequestHandler
from pathlib import Path

from PIL import Image


_base = {}
def jpeg(n, size):
    "A JPEG of `size` that differs for each `n`: a tinted gradient with a little noise, which compresses like a photo."
    if size not in _base:
        g = Image.linear_gradient('L').resize(size).convert('RGB')
        _base[size] = Image.blend(g, Image.effect_noise(size, 20).convert('RGB'), 0.15)
    tint = Image.new('RGB', size, (n % 256, (n // 256) * 64, 128))  # distinct for n < 1024
    b = io.BytesIO(); Image.blend(_base[size], tint, 0.5).save(b, 'JPEG', quality=90, comment=f'image {n}')  # distinct bytes
    return b.getvalue()


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def do_GET(self):
        time.sleep(self.server.latency)
        body = self.server.bodies.get(self.path)
        if body is None: return self.send_error(404)
        self.send_response(200)
        self.send_header('Content-Type', 'image/jpeg'); self.send_header('Content-Length', str(len(body)))
        self.end_headers(); self.wfile.write(body)


class Server(ThreadingHTTPServer):
    daemon_threads, request_queue_size = True, 512


def serve(n, latency, q):
    "Run the image server (in its own process, so it does not compete with the client for the GIL)."
    srv = Server(('127.0.0.1', 0), Handler)
    srv.latency, srv.bodies = latency, {f'/img/{i}.jpg': jpeg(i, (320, 240)) for i in range(n)}
    q.put(srv.server_address[1])
    srv.serve_forever()


def timed(f):
    t = time.perf_counter(); r = f(); return time.perf_counter() - t, r


def line(name, base, ours, goal):
    ratio = base / ours
    ok = 'meets' if ratio >= goal else 'BELOW'
    print(f"{name}: fastai {base:.2f} s, fastlessons {ours:.2f} s, ratio {ratio:.1f}x ({ok} the {goal:g}x goal)")
    return ratio


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--n', type=int, default=300)
    ap.add_argument('--latency', type=float, default=0.1)
    ap.add_argument('--repeat', type=int, default=1, help='runs of each; the best time of each is reported')
    a = ap.parse_args()

    from fastai.vision.all import download_images as fa_download, verify_images, resize_images, get_image_files
    from fastlessons.download import download_images
    from fastlessons.images import verify_resize
    from fastlessons.core import cpu_name, cpu_flags
    print(f"CPU: {cpu_name()}, {os.cpu_count()} cores; flags: {' '.join(f for f,on in cpu_flags().items() if on) or 'none of avx2, avx512f, avx512_bf16, amx'}")

    tmp = Path(tempfile.mkdtemp(prefix='bench_images_'))
    q = mp.Queue()
    srv = mp.Process(target=serve, args=(a.n, a.latency, q), daemon=True); srv.start()
    port = q.get(timeout=60)
    urls = [f'http://127.0.0.1:{port}/img/{i}.jpg' for i in range(a.n)]
    try:
        print(f"download: {a.n} URLs, {a.latency*1000:.0f} ms latency each")
        tb, to = [], []
        for r in range(a.repeat):
            t, _ = timed(lambda: fa_download(tmp/f'fa{r}', urls=urls)); tb.append(t)
            n_fa = len(list((tmp/f'fa{r}').iterdir()))
            t, rep = timed(lambda: download_images(tmp/f'fl{r}', urls, progress=False)); to.append(t)
            assert n_fa == a.n and rep.counts['ok'] == a.n, (n_fa, rep)
        r1 = line('download', min(tb), min(to), 8)

        print(f"verify + resize: {a.n} JPEGs of 1600x1200 to 400 px")
        big = [jpeg(i, (1600, 1200)) for i in range(a.n)]
        tb, to = [], []
        for r in range(a.repeat):
            pa, pb = tmp/f'va{r}', tmp/f'vb{r}'
            for p in (pa, pb):
                p.mkdir()
                for i, b in enumerate(big): (p/f'{i:04d}.jpg').write_bytes(b)
            def fastai_way():
                bad = verify_images(get_image_files(pa))
                resize_images(pa, max_size=400, dest=pa)
                return bad
            t, bad = timed(fastai_way); tb.append(t)
            t, rep = timed(lambda: verify_resize(pb, 400, progress=False)); to.append(t)
            assert len(bad) == 0 and rep.counts['resized'] == a.n, (bad, rep)
            with Image.open(pb/'0000.jpg') as im: assert im.size == (400, 300), im.size
            with Image.open(pa/'0000.jpg') as im: assert im.size == (400, 300), im.size
        r2 = line('verify+resize', min(tb), min(to), 3)
    finally:
        srv.terminate(); srv.join()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0 if r1 >= 8 and r2 >= 3 else 1


if __name__ == '__main__': sys.exit(main())
