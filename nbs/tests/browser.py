"""Test harness: drive headless Chromium (Playwright) and JupyterLab to check the notebooks and their widgets in a real browser.

Not part of the `fastlessons` package: test notebooks import it from `nbs/tests`. Its tests and the explanation of each
helper are in `nbs/tests/browser.ipynb`."""

from __future__ import annotations
import os, re, sys, json, time, shutil, signal, socket, secrets, tempfile, subprocess, urllib.request
import asyncio
from contextlib import contextmanager, asynccontextmanager
from ipaddress import ip_address
from pathlib import Path
from urllib.parse import urlparse
from fastcore.net import free_port

__all__ = ['CHROMIUM_ARGS', 'ensure_chromium', 'is_local', 'page_errors', 'procs_using', 'stop_group', 'die_with_parent',
           'chromium_context', 'console_log', 'runnable_copy', 'runnable_nbs', 'nb_html',
           'screenshot_dir', 'check_html', 'LabServer', 'lab_server', 'lab_wait_idle', 'lab_open',
           'lab_run_all', 'lab_run_code']

CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
                 '--disable-background-networking', '--disable-component-update', '--disable-sync']

def ensure_chromium(install:bool=True, # Install Debian's `chromium` package with apt-get when it is missing
                   )->str: # Path of the `chromium` executable
    "Find Chromium on the `PATH`, installing it with apt-get first if allowed and needed."
    if (p := shutil.which('chromium')): return p
    if not install: raise FileNotFoundError("chromium is not installed: run `apt-get install -y chromium`")
    if shutil.which('apt-get') is None: raise FileNotFoundError("chromium is missing and there is no apt-get to install it")
    sudo = [] if os.geteuid() == 0 else ['sudo', '-n']
    env = dict(os.environ, DEBIAN_FRONTEND='noninteractive')
    for cmd in (['apt-get', 'update', '-q'], ['apt-get', 'install', '-y', '-q', 'chromium']):
        r = subprocess.run(sudo+cmd, capture_output=True, text=True, env=env, timeout=900)
        if r.returncode: raise RuntimeError(f"`{' '.join(cmd)}` failed:\n{r.stderr[-2000:]}")
    if (p := shutil.which('chromium')): return p
    raise FileNotFoundError("apt-get installed chromium but it is not on the PATH")

_LOCAL_SCHEMES = {'file', 'data', 'blob', 'about', 'chrome', 'devtools'}

def is_local(url:str, # Any URL a page may load
            )->bool: # True for loopback hosts and for URLs that need no network at all
    "Whether loading `url` stays on this machine."
    u = urlparse(url)
    if u.scheme in _LOCAL_SCHEMES: return True
    host = (u.hostname or '').lower()
    if host == 'localhost' or host.endswith('.localhost'): return True
    try: return ip_address(host).is_loopback
    except ValueError: return False

def page_errors(msgs:list, # Console messages, dicts with `type`, `text` and `url` (`type` 'pageerror' for uncaught exceptions)
               )->list: # The messages that are errors, other than refused loads from outside addresses
    "The errors in a page's console that are not refused loads of outside resources."
    def refused(m): return m['text'].startswith('Failed to load resource: net::ERR_') and not is_local(m.get('url') or '')
    return [m for m in msgs if m['type'] in ('error', 'pageerror') and not refused(m)]

def procs_using(text:str, # A string to look for, e.g. a unique temporary folder
               )->list: # Ids of running processes (not zombies) whose command line or working folder contains `text`
    "Processes whose command line or working folder mentions `text`."
    res = []
    for d in Path('/proc').iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid(): continue
        try:
            if ') Z' in (d/'stat').read_text(): continue
            cmd = (d/'cmdline').read_bytes().replace(b'\0', b' ').decode(errors='replace')
            if text in cmd or text in os.readlink(d/'cwd'): res.append(int(d.name))
        except OSError: pass
    return res

def stop_group(proc:subprocess.Popen, # A process started with `start_new_session=True`
               grace:float=10, # Seconds to wait after SIGTERM before SIGKILL
              ):
    "Stop `proc` and every process in its process group."
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try: os.killpg(proc.pid, sig)
        except ProcessLookupError: pass
        try: proc.wait(grace); break
        except subprocess.TimeoutExpired: pass
    try: os.killpg(proc.pid, signal.SIGKILL)  # children that outlived their parent
    except ProcessLookupError: pass

def die_with_parent():
    "For `preexec_fn`: have the child process killed when the process that started it dies (Linux; elsewhere a no-op)."
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 is PR_SET_PDEATHSIG
    except (OSError, AttributeError): pass

@asynccontextmanager
async def chromium_context(timeout:float=60, # Default limit, in seconds, for every Playwright wait in this context
                           width:int=1400, height:int=1000, # Size of the page's viewport
                          ):
    "A Playwright `BrowserContext` in headless Chromium that loads only local URLs; its `refused` lists the rest."
    from playwright.async_api import async_playwright
    exe, profile = ensure_chromium(), tempfile.mkdtemp(prefix='fl-chromium-')
    refused = []
    async def _route(route):
        if is_local(route.request.url): await route.continue_()
        else: refused.append(route.request.url); await route.abort('addressunreachable')
    try:
        async with async_playwright() as pw:
            ctx = await pw.chromium.launch_persistent_context(profile, executable_path=exe, headless=True, args=CHROMIUM_ARGS,
                                                              viewport=dict(width=width, height=height))
            try:
                ctx.set_default_timeout(timeout*1000)
                await ctx.route('**/*', _route)
                ctx.refused = refused
                yield ctx
            finally: await ctx.close()
        t0 = time.time()
        while (left := procs_using(profile)) and time.time()-t0 < 10: await asyncio.sleep(0.2)
        if left: raise RuntimeError(f"Chromium processes {left} outlived the browser")
    finally: shutil.rmtree(profile, ignore_errors=True)

def console_log(page, # A Playwright `Page`
               )->list: # Filled with a dict per message as the page runs
    "Record `page`'s console messages and uncaught exceptions."
    msgs = []
    page.on('console', lambda m: msgs.append(dict(type=m.type, text=m.text, url=(m.location or {}).get('url', ''))))
    page.on('pageerror', lambda e: msgs.append(dict(type='pageerror', text=str(e), url='')))
    return msgs

def runnable_copy(fn, # The notebook to copy
                  dest, # Where to write the copy (a file path)
                  flags:str='', # Flags to run, as for `nbdev-test --flags`: their cells are kept
                 )->Path: # `dest`
    "Copy notebook `fn` to `dest` without the code cells that `nbdev-test --flags flags` would skip."
    import nbformat
    from nbdev.config import get_config
    from nbdev.test import nb_test_cells
    fn, dest = Path(fn), Path(dest)
    skip = [f for f in get_config().tst_flags.split() if f not in flags.split()]  # as nbdev-test: the project's test flags
    keep = {c.idx_ for c in nb_test_cells(fn, skip_flags=skip)}
    nb = nbformat.read(fn, as_version=4)
    nb.cells = [c for i,c in enumerate(nb.cells) if c.cell_type != 'code' or i in keep]
    dest.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, dest)
    return dest

def runnable_nbs(src, # The notebooks' folder, e.g. `nbs`
                 dest=None, # Folder to create; a new temporary folder if `None`
                 flags:str='', # Flags to run, as for `nbdev-test --flags`
                )->Path: # The new folder
    "Copy the folder `src`, every notebook in it as its `runnable_copy`."
    src = Path(src)
    dest = Path(dest or tempfile.mkdtemp(prefix='fl-nbs-'))/src.name
    skip = shutil.ignore_patterns('*.ipynb', 'data', 'models', '_proc', '_docs', '.ipynb_checkpoints', '.hypothesis', 'screenshots',
                                  'bird_or_not', 'bears', 'space')
    shutil.copytree(src, dest, ignore=skip)
    if (cfg := src.parent/'pyproject.toml').exists(): shutil.copy(cfg, dest.parent)  # the project's nbdev settings
    for fn in src.rglob('*.ipynb'):
        rel = fn.relative_to(src)
        if not any(p.startswith(('_', '.')) for p in rel.parts): runnable_copy(fn, dest/rel, flags)
    return dest

def nb_html(fn, # A notebook, with the outputs it has stored
            dest, # The HTML file to write
           )->Path: # `dest`
    "Notebook `fn` converted to HTML as it is stored, outputs and widget state included: what a reader sees on GitHub or the docs site. Nothing is executed."
    from nbconvert import HTMLExporter
    html,_ = HTMLExporter().from_filename(str(fn))
    dest = Path(dest); dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(html, encoding='utf-8')
    return dest

def screenshot_dir()->Path:
    "The folder for review screenshots (created if needed)."
    d = os.environ.get('FASTLESSONS_SCREENSHOTS')
    if not d:
        try:
            from nbdev.config import get_config
            d = get_config().config_path/'screenshots'
        except Exception: d = Path.cwd()/'screenshots'
    d = Path(d); d.mkdir(parents=True, exist_ok=True)
    return d

async def check_html(ctx, # A `chromium_context`
               html, # The HTML file of a notebook
               n_cells:int, # How many cells the notebook has
               shot=None, # Path for a screenshot of the top of the page, or `None`
              )->list: # Descriptions of the problems; empty when the page is fine
    "Load a notebook's HTML in Chromium and list its console errors and rendering problems."
    page = await ctx.new_page()
    try:
        msgs = console_log(page)
        await page.goto(Path(html).absolute().as_uri(), wait_until='load')
        await page.wait_for_timeout(500)   # let late scripts (widgets) report
        probs = [f"{m['type']}: {m['text']} ({m['url']})" for m in page_errors(msgs)]
        shown = await page.locator('.jp-Cell').count()
        if shown != n_cells: probs.append(f"{shown} cells rendered, {n_cells} expected")
        if shot: await page.screenshot(path=str(shot))
        return probs
    finally: await page.close()

class LabServer:
    "A running JupyterLab: its `port`, `token`, `root` folder and server process `proc`."
    def __init__(self, port, token, root, proc, home): self.port,self.token,self.root,self.proc,self.home = port,token,Path(root),proc,home
    def url(self, path:str='lab'): return f'http://127.0.0.1:{self.port}/{path.lstrip("/")}?token={self.token}'
    def __repr__(self): return f'LabServer(127.0.0.1:{self.port}, root={self.root})'

_LAB_SETTINGS = {'@jupyterlab/notebook-extension/tracker': {'autoStartDefaultKernel': True},
                 '@jupyterlab/apputils-extension/notification': {'fetchNews': 'false', 'checkForUpdates': False}}

def _lab_up(srv, timeout):
    "Wait until the server `srv` answers its status API, or fail."
    t0 = time.time()
    while time.time()-t0 < timeout:
        if srv.proc.poll() is not None: raise RuntimeError(f"jupyter lab exited with code {srv.proc.returncode}:\n{(srv.home/'log').read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(srv.url('api/status'), timeout=2) as r: return json.load(r)
        except OSError: time.sleep(0.3)
    raise TimeoutError(f"jupyter lab did not answer within {timeout} s:\n{(srv.home/'log').read_text()[-3000:]}")

@contextmanager
def lab_server(root, # Folder the server serves: notebooks open relative to it
               timeout:float=120, # Seconds to wait for the server to answer
               idle:int=600, # Seconds after which an idle kernel, then an idle server, shuts down by itself
              ):
    "Run JupyterLab on 127.0.0.1 with a random token; stop it, and every kernel it started, on exit."
    home = Path(tempfile.mkdtemp(prefix='fl-lab-'))
    for k,v in _LAB_SETTINGS.items():
        (home/'settings'/k).parent.mkdir(parents=True, exist_ok=True)
        (home/'settings'/f'{k}.jupyterlab-settings').write_text(json.dumps(v))
    port, token = free_port(), secrets.token_hex(24)
    cmd = [sys.executable, '-m', 'jupyter', 'lab', '--no-browser', '--ip=127.0.0.1', f'--port={port}', '--ServerApp.port_retries=0',
           f'--IdentityProvider.token={token}', f'--ServerApp.root_dir={root}', '--LabApp.extension_manager=readonly',
           f'--LabApp.user_settings_dir={home}/settings', f'--LabApp.workspaces_dir={home}/workspaces',
           f'--ServerApp.shutdown_no_activity_timeout={idle}', f'--MappingKernelManager.cull_idle_timeout={idle}',
           '--MappingKernelManager.cull_interval=30']
    if os.geteuid() == 0: cmd.append('--allow-root')
    env = dict(os.environ, JUPYTER_RUNTIME_DIR=str(home/'runtime'), JUPYTER_CONFIG_DIR=str(home/'config'))
    with open(home/'log', 'w') as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=die_with_parent)
    srv = LabServer(port, token, root, proc, home)
    try:
        _lab_up(srv, timeout)
        yield srv
    finally:
        stop_group(proc)
        t0 = time.time()  # kernels run in process groups of their own: stop any the server left
        while (left := procs_using(str(home))) and time.time()-t0 < 10:
            for pid in left:
                try: os.kill(pid, signal.SIGKILL)
                except ProcessLookupError: pass
            time.sleep(0.3)
        shutil.rmtree(home, ignore_errors=True)
        if left: raise RuntimeError(f"processes {left} outlived the Jupyter server")

_IDLE_JS = '''() => [...document.querySelectorAll('.jp-StatusBar-TextItem')].some(e => /\\|\\s*Idle/.test(e.textContent))
                   && !document.querySelector('.jp-NotebookPanel .jp-Spinner')'''

async def lab_wait_idle(page, # A Playwright page showing a JupyterLab notebook
                        timeout:float=60, # Seconds to wait
                       ):
    "Wait until the notebook in `page` is drawn and its kernel is idle."
    await page.wait_for_function(_IDLE_JS, timeout=timeout*1000)

async def lab_open(ctx, # A `chromium_context`
                   srv:LabServer, # A running `lab_server`
                   path:str, # Notebook path relative to the server's root
                   timeout:float=120, # Seconds to wait for the notebook and its kernel
                  ):
    "Open notebook `path` in JupyterLab; the returned page's `msgs` records its console."
    page = await ctx.new_page()
    page.msgs = console_log(page)
    await page.goto(srv.url(f'lab/tree/{path}'), timeout=timeout*1000)
    await page.wait_for_selector('.jp-NotebookPanel .jp-Cell', timeout=timeout*1000)
    await lab_wait_idle(page, timeout)
    return page

async def _prompts(page): return await page.eval_on_selector_all('.jp-Notebook .jp-CodeCell .jp-InputPrompt', 'es => es.map(e => e.textContent.trim())')

async def lab_run_all(page, # A page from `lab_open`
                      timeout:float=600, # Seconds to wait for the whole notebook
                     )->int: # Number of code cells run
    "Run every cell of the notebook in `page` from the menu, and wait for the kernel to finish."
    before = await _prompts(page)
    await page.locator('.lm-MenuBar-itemLabel', has_text='Run').first.click()
    await page.locator('.lm-Menu-itemLabel', has_text='Run All Cells').first.click()
    t0 = time.time()
    while await _prompts(page) == before:
        if time.time()-t0 > 30: raise TimeoutError("Run All Cells started nothing")
        await asyncio.sleep(0.2)
    await page.wait_for_function(f'''() => ({_IDLE_JS})() && ![...document.querySelectorAll('.jp-Notebook .jp-CodeCell .jp-InputPrompt')]
                                           .some(e => e.textContent.includes('*'))''', timeout=timeout*1000, polling=500)
    ps = await _prompts(page)
    if (unrun := [i for i,p in enumerate(ps) if not re.fullmatch(r'\[\d+\]:', p)]):
        errs = await page.eval_on_selector_all('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]', 'es => es.map(e => e.innerText)')
        raise RuntimeError(f"code cells {unrun} did not run; errors:\n" + '\n'.join(e[-2000:] for e in errs))
    return len(ps)

async def lab_run_code(page, # A page from `lab_open`
                       code:str, # Python to run in the notebook's kernel
                       timeout:float=60, # Seconds to wait for it
                      )->str: # The text of the new cell's output
    "Append a cell with `code` to the notebook in `page`, run it, and return its output text."
    cells = page.locator('.jp-Notebook .jp-Cell')
    n = await cells.count()
    await cells.nth(n-1).locator('.jp-InputPrompt').click()   # select the last cell, in command mode
    await page.keyboard.press('Escape')
    await page.keyboard.press('b')                             # insert a cell below
    cell = cells.nth(n)
    await cell.wait_for(timeout=timeout*1000)
    await page.keyboard.press('Enter')                         # edit it
    await page.keyboard.insert_text(code)
    await page.keyboard.press('Control+Enter')                 # run it
    t0 = time.time()
    while not re.fullmatch(r'\[\d+\]:', (await cell.locator('.jp-InputPrompt').inner_text()).strip()):
        if time.time()-t0 > timeout: raise TimeoutError(f"code did not run within {timeout} s: {code!r}")
        await asyncio.sleep(0.2)
    return await cell.locator('.jp-OutputArea').inner_text()

@contextmanager
def serving(cmd:list, # The command that starts the server, e.g. `[sys.executable, 'app.py']`
            ready:str=r'Running on local URL:\s+(\S+)', # A regular expression its output matches once it serves; group 1 is its URL
            timeout:float=180, # Seconds to wait for it
            **kwargs, # Passed on to `subprocess.Popen`: `cwd`, `env`, ...
           ):
    "Run a server in a process group of its own; yield `(process, url)` once its output says it serves; stop it, and all it started, at the end."
    log = tempfile.NamedTemporaryFile('w+', prefix='fl-serve-', suffix='.log', delete=False)
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, text=True, start_new_session=True, preexec_fn=die_with_parent, **kwargs)
    out = lambda: Path(log.name).read_text(errors='replace')
    try:
        t0 = time.time()
        while not (m := re.search(ready, out())):
            if proc.poll() is not None: raise RuntimeError(f"{Path(cmd[0]).name} exited with code {proc.returncode}:\n{out()[-3000:]}")
            if time.time()-t0 > timeout: raise TimeoutError(f"{Path(cmd[0]).name} did not serve within {timeout:.0f} s:\n{out()[-3000:]}")
            time.sleep(0.3)
        proc.output = out
        yield proc, m.group(1)
    finally:
        stop_group(proc)
        log.close(); os.unlink(log.name)

__all__ += ['serving']
