"""A loopback web for the lessons' online path: an image search in the format `ddgs` returns, an image host that
answers with real images and with the failures the web has, and the pets data as a small tarball at `URLs.PETS`.
Everything is served on 127.0.0.1; the kernel it is meant for sends every other address to a closed port, so no
pretrained weights can be had and the lessons take their fallback (training from scratch). A test helper: it is not
part of the package.
usage: with LoopbackWeb(folder) as web: run a notebook with web.prelude() as its first cell and web.env() in its kernel."""
import io, json, re, tarfile, threading, time, urllib.parse
from collections import Counter
from http.server import ThreadingHTTPServer, BaseHTTPRequestHandler
from pathlib import Path
from PIL import Image
from fastcore.net import free_port

# What a search term finds: the first keyword it holds names the handwritten digit that plays that class.
KEYWORDS = [('grizzly', 0), ('black', 4), ('teddy', 7), ('bird', 3), ('forest', 7)]
# The failures each search's results end with: an HTML page saved as .jpg, a 404, a body cut short, a slow answer.
FAULTS = ['page.jpg', 'missing.jpg', 'truncated.jpg', 'slow.jpg']
CATS, DOGS = ('Abyssinian', 'Bengal', 'Persian'), ('beagle', 'boxer', 'pug')   # pets: a cat's breed is capitalised

def digit_images(n_per_digit:int=90, size:int=96)->dict:
    "scikit-learn's handwritten digits as `size`-pixel greyscale PIL images, `n_per_digit` of each: digit -> list."
    from sklearn.datasets import load_digits
    d = load_digits()
    out = {}
    for im,y in zip(d.images, d.target):
        if len(out.setdefault(int(y), [])) < n_per_digit:
            out[int(y)].append(Image.fromarray((255 - im*255/16).astype('uint8')).resize((size,size), Image.BILINEAR))
    return out

def encode(im, fmt:str)->bytes:
    "`im` as the bytes of a `fmt` ('png' or 'jpg') file, RGB as photos are."
    b = io.BytesIO(); im.convert('RGB').save(b, 'PNG' if fmt == 'png' else 'JPEG', quality=92); return b.getvalue()

def pets_tarball(digits:dict, n:int=40)->bytes:
    "A small stand-in for the Oxford-IIIT pets archive: `oxford-iiit-pet/images/<Breed>_<i>.jpg`, cats (3s) and dogs (7s)."
    b = io.BytesIO()
    with tarfile.open(fileobj=b, mode='w:gz') as tf:
        for digit,breeds in ((3, CATS), (7, DOGS)):
            for i,im in enumerate(digits[digit][:n]):
                data = encode(im, 'jpg')
                info = tarfile.TarInfo(f'oxford-iiit-pet/images/{breeds[i % len(breeds)]}_{i+1}.jpg'); info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    return b.getvalue()

class _Handler(BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    def log_message(self, *a): pass
    def send(self, body:bytes, ctype:str, code:int=200, length:int|None=None):
        self.send_response(code); self.send_header('Content-Type', ctype)
        self.send_header('Content-Length', str(len(body) if length is None else length)); self.end_headers()
        if self.command != 'HEAD': self.wfile.write(body)
    def do_HEAD(self): self.do_GET()
    def do_GET(self):
        web = self.server.web
        u = urllib.parse.urlsplit(self.path)
        with web.lock: web.hits[u.path] += 1
        if u.path == '/': return self.send(b'<!DOCTYPE html><title>loopback web</title>', 'text/html')
        if u.path == '/search':
            qs = urllib.parse.parse_qs(u.query)
            return self.send(json.dumps(web.results(qs.get('q', [''])[0], int(qs.get('page', ['1'])[0]))).encode(), 'application/json')
        if u.path == '/oxford-iiit-pet.tgz': return self.send(web.pets, 'application/x-gzip')
        m = re.fullmatch(r'/img/(\d)/(\d+)\.(png|jpg)', u.path)
        if m and int(m[1]) in web.digits and int(m[2]) < len(web.digits[int(m[1])]):
            return self.send(encode(web.digits[int(m[1])][int(m[2])], m[3]), f"image/{'png' if m[3] == 'png' else 'jpeg'}")
        m = re.fullmatch(r'/bad/\d+/([a-z]+\.jpg)', u.path)
        if m and m[1] == 'page.jpg': return self.send(b'<!DOCTYPE html><html><body>Please log in</body></html>', 'image/jpeg')
        if m and m[1] == 'truncated.jpg':   # says how long it is, sends half, and closes
            data = encode(web.digits[3][0], 'jpg'); self.close_connection = True
            return self.send(data[:len(data)//2], 'image/jpeg', length=len(data))
        if m and m[1] == 'slow.jpg':   # a whole image of the search's own digit (turned a little: no duplicate), late
            time.sleep(web.slow); return self.send(encode(web.digits[web.digit_of[int(m[0].split('/')[2])]][0].rotate(8, fillcolor=255), 'jpg'), 'image/jpeg')
        self.send_error(404)

class _Server(ThreadingHTTPServer):
    daemon_threads = True
    def handle_error(self, request, client_address): pass

class LoopbackWeb:
    "An image search, an image host and the pets data on 127.0.0.1; counts every request. A context manager."
    def __init__(self, per_search:int=30, # Images in the results of one search (then the faults)
                 slow:float=1.0, # Seconds the slow image takes
                ):
        self.per_search,self.slow = per_search,slow
        self.digits = digit_images()
        self.pets = pets_tarball(self.digits)
        self.hits,self.queries,self.lock,self._next,self.digit_of = Counter(), [], threading.Lock(), Counter(), {}

    def results(self, q:str, page:int)->list:
        "ddgs' result dicts for search `q`: `per_search` images of the digit its keyword names, none seen in an earlier search, then the faults; page 2 is empty."
        with self.lock:
            self.queries.append((q, page))
            digit = next((d for k,d in KEYWORDS if k in q.lower()), None)
            if page != 1 or digit is None: return []
            n = len(self.queries); self.digit_of[n] = digit
            start = self._next[digit]; self._next[digit] += self.per_search
        idx = [(start + i) % len(self.digits[digit]) for i in range(self.per_search)]
        urls = [f'{self.base}/img/{digit}/{i}.{"png" if i % 2 else "jpg"}' for i in idx] + [f'{self.base}/bad/{n}/{f}' for f in FAULTS]
        return [{'title': f'{q} {i}', 'image': u, 'thumbnail': u, 'url': f'https://example.com/{i}', 'height': 96, 'width': 96,
                 'source': 'Bing'} for i,u in enumerate(urls)]

    def __enter__(self):
        self.srv = _Server(('127.0.0.1', 0), _Handler); self.srv.web = self
        self.base = f'http://127.0.0.1:{self.srv.server_address[1]}'
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()
        return self
    def __exit__(self, *exc): self.srv.shutdown(); self.srv.server_close()

    def prelude(self)->str:
        "Code for a kernel's first cell: `ddgs` searches this web, DuckDuckGo's address answers from it, and `URLs.PETS` is its tarball."
        return f"""import json, urllib.request, urllib.parse, ddgs.ddgs, fastlessons.core, fastai.data.external
_WEB = {self.base!r}
class _LoopbackDDGS:
    "Stands in for ddgs' DDGS: asks the loopback web's search."
    def __init__(self, *args, **kwargs): pass
    def images(self, query, max_results=100, page=1, **kwargs):
        with urllib.request.urlopen(_WEB + '/search?' + urllib.parse.urlencode({{'q': query, 'page': page}}), timeout=10) as r:
            return json.load(r)[:max_results]
ddgs.ddgs.DDGS = _LoopbackDDGS
_reachable = fastlessons.core.url_reachable
def _url_reachable(url, timeout=3.0):
    "DuckDuckGo is the loopback web; any other address is asked for real (and the kernel's proxy refuses it)."
    return _reachable(_WEB + '/' if urllib.parse.urlsplit(url).hostname == 'duckduckgo.com' else url, timeout)
fastlessons.core.url_reachable = _url_reachable
fastai.data.external.URLs.PETS = _WEB + '/oxford-iiit-pet.tgz'
del _LoopbackDDGS, _url_reachable"""

    def env(self, caches)->dict:
        "Environment variables for a kernel on this web: online, every other address sent to a closed port, and empty caches in `caches`."
        closed = f'http://127.0.0.1:{free_port("127.0.0.1")}'   # taken and let go: nothing listens there
        caches = Path(caches)
        return {'FASTLESSONS_OFFLINE': '0', 'http_proxy': closed, 'https_proxy': closed, 'HTTP_PROXY': closed, 'HTTPS_PROXY': closed,
                'no_proxy': '127.0.0.1,localhost', 'NO_PROXY': '127.0.0.1,localhost', 'TORCH_HOME': str(caches/'torch'),
                'HF_HOME': str(caches/'hf'), 'FASTAI_HOME': str(caches/'fastai'), 'FASTLESSONS_CACHE': str(caches/'fastlessons')}
