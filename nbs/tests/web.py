"""A loopback web for the lessons' online path: an image search in the format `ddgs` returns, an image host that
answers with real images and with the failures the web has, and the pets data as a small tarball at `URLs.PETS`.
Everything is served on 127.0.0.1; the kernel it is meant for sends every other address to a closed port, so no
pretrained weights can be had and the lessons take their fallback (training from scratch). A test helper: it is not
part of the package.
usage: with LoopbackWeb(folder) as web: run a notebook with web.prelude() as its first cell and web.env() in its kernel.

`Server` is the one loopback HTTP server of the tests (LoopbackWeb's included): `Server(handler)` serves on a free port of
127.0.0.1 from a thread, at once; `FaultHandler` serves good images and every fault a download can meet."""
import io, json, re, socket, struct, tarfile, threading, time, urllib.parse
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

class Server(ThreadingHTTPServer):
    "`handler` served on a free port of 127.0.0.1 by a daemon thread, from now until `stop()` (or the end of a `with`); `url` is its address, `hits` counts requests by path."
    daemon_threads, request_queue_size = True, 128
    def __init__(self, handler, # A `BaseHTTPRequestHandler` subclass; it may call `self.server.count(self.path)`
                 **attrs): # Set on the server, for the handler to read (`self.server.<name>`)
        super().__init__(('127.0.0.1', 0), handler)
        self.hits, self.lock, self.url = Counter(), threading.Lock(), f'http://127.0.0.1:{self.server_address[1]}'
        for k,v in attrs.items(): setattr(self, k, v)
        threading.Thread(target=self.serve_forever, daemon=True, name=f'test-server-{self.server_address[1]}').start()
    def count(self, path:str):
        with self.lock: self.hits[path] += 1
    def handle_error(self, request, client_address): pass   # a client that hangs up, or a fault served on purpose
    def stop(self): self.shutdown(); self.server_close()
    def __exit__(self, *exc): self.stop()

def image_bytes(fmt:str, # A format PIL writes: 'jpeg', 'png', 'gif', 'webp', 'bmp', 'tiff'
                mode:str='RGB', size=(4,3))->bytes:
    "A blank image of `size` in `fmt`, as the bytes of its file."
    b = io.BytesIO(); Image.new(mode, size).save(b, format=fmt); return b.getvalue()

def jpeg_bytes(n:int, size=(64,48))->bytes:
    "A small JPEG whose colour depends on `n`, so different `n` give different bytes."
    b = io.BytesIO(); Image.new('RGB', size, ((n*37)%256, (n*91)%256, (n*53)%256)).save(b, 'JPEG', quality=90)
    return b.getvalue()

class FaultHandler(BaseHTTPRequestHandler):
    """Good images, and every fault a download meets, one per path: `/img/N.jpg` is `jpeg_bytes(N)`, `/copy/N.jpg` the same bytes,
    `/lag/N.jpg` the same after 0.3 s; then a slow answer, a trickle, HTTP errors, bodies cut short or too big, an HTML page as a
    JPEG, a redirect loop, a reset connection. Counts each request in the server's `hits`."""
    def log_message(self, *a): pass
    def send(self, body, ctype='image/jpeg', length=None, code=200):
        self.send_response(code); self.send_header('Content-Type', ctype)
        if length is not False: self.send_header('Content-Length', str(len(body) if length is None else length))
        self.end_headers()
        if body: self.wfile.write(body)
    def redirect(self, code, to): self.send_response(code); self.send_header('Location', to); self.send_header('Content-Length', '0'); self.end_headers()
    def do_GET(self):
        p = self.path; self.server.count(p)
        n = int(re.sub(r'\D', '', p) or 0)
        if p.startswith(('/img/','/copy/')): return self.send(jpeg_bytes(n))
        if p.startswith('/lag/'): time.sleep(0.3); return self.send(jpeg_bytes(n))
        if p == '/slow.jpg': time.sleep(3); return self.send(jpeg_bytes(0))
        if p == '/trickle.jpg':   # 20 bytes every 0.1 s: each read is quick, the whole never ends in time
            body = jpeg_bytes(1); self.send_response(200); self.send_header('Content-Type', 'image/jpeg'); self.end_headers()
            for i in range(0, len(body), 20): self.wfile.write(body[i:i+20]); self.wfile.flush(); time.sleep(0.1)
            return
        if p == '/404.jpg': return self.send_error(404)
        if p == '/500.jpg': return self.send_error(500)
        if p == '/truncated.jpg': body = jpeg_bytes(2); return self.send(body[:len(body)//2], length=len(body))
        if p == '/cut.jpg': body = jpeg_bytes(3); self.close_connection = True; return self.send(body[:len(body)//2], length=False)
        if p == '/html-as-jpeg.jpg': return self.send(b'<!DOCTYPE html><html><body>Access denied</body></html>')
        if p == '/page.html': return self.send(b'<html>a web page</html>', ctype='text/html')
        if p in ('/big.jpg', '/big-stream.jpg'):
            if p == '/big-stream.jpg': self.close_connection = True
            return self.send(self.server.big, length=None if p == '/big.jpg' else False)
        if p == '/empty.jpg': return self.send(b'')
        if p == '/loop.jpg': return self.redirect(302, '/loop.jpg')
        if p == '/moved.jpg': return self.redirect(301, '/img/77.jpg')
        if p == '/reset.jpg':
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
            self.connection.close(); return
        self.send_error(404)

def fault_server()->'Server':
    "A `Server` of `FaultHandler`, with its big image (`big`, noise that JPEG cannot shrink: over 20 kB)."
    b = io.BytesIO(); Image.effect_noise((300,300), 80).convert('RGB').save(b, 'JPEG', quality=95)
    return Server(FaultHandler, big=b.getvalue())

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
        self.srv = Server(_Handler, web=self); self.base = self.srv.url
        return self
    def __exit__(self, *exc): self.srv.stop()

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
