"""Test harness: environments as learners have them -- a plain `pip install`, Colab's and Kaggle's preinstalled
versions -- and notebooks run in them through a Jupyter kernel of that environment.

Not part of the `fastlessons` package: `nbs/tests/platforms.ipynb` imports it, and explains and tests each helper."""

from __future__ import annotations
import os, re, sys, json, shutil, tempfile, subprocess
from pathlib import Path

__all__ = ['PLATFORMS', 'KEPT', 'ROOT', 'read_pins', 'canon', 'make_venv', 'pip', 'installed', 'changed', 'build_wheel',
           'kernel_env', 'fake_platform', 'code_cells', 'run_notebook', 'command_path', 'check_plain', 'check_platform']

ROOT = Path(__file__).resolve().parent.parent.parent   # the repository
PLATFORMS = Path(__file__).parent/'platforms'   # colab.txt, kaggle.txt: the versions each preinstalls
KEPT = ['torch', 'torchvision', 'fastai', 'fastcore', 'numpy', 'pillow', 'ipywidgets', 'ipython', 'ipykernel']  # what installing fastlessons must not change

def canon(name:str)->str:
    "A package name as pip compares them: lower case, runs of `-`, `_`, `.` as one `-`."
    return re.sub(r'[-_.]+', '-', name).lower()

def read_pins(fn)->dict:
    "The `name==version` lines of a requirements file, as `{canonical name: version}`."
    pins = {}
    for line in Path(fn).read_text().splitlines():
        line = line.split('#', 1)[0].strip()
        if not line: continue
        m = re.fullmatch(r'([A-Za-z0-9_.-]+)==([^\s;]+)', line)
        if not m: raise ValueError(f"{fn}: not a `name==version` line: {line!r}")
        pins[canon(m[1])] = m[2]
    return pins

def _bin(venv:Path)->Path: return Path(venv)/('Scripts' if os.name == 'nt' else 'bin')

def make_venv(folder, # Folder to create the environment in
              python:str=sys.executable, # The Python to make it from
             )->Path: # The environment's `python`
    "A new, empty virtual environment with pip."
    subprocess.run([python, '-m', 'venv', str(folder)], check=True, capture_output=True, text=True, timeout=300)
    return _bin(folder)/('python.exe' if os.name == 'nt' else 'python')

def pip(py, # The environment's `python`
        *args:str, # pip's arguments, e.g. `'install', '-r', 'colab.txt'`
        timeout:float=1800, # Seconds before the install is given up on
        env:dict|None=None, # Extra environment variables
       )->str: # pip's output
    "Run pip in the environment of `py`; a failure raises with the end of pip's output."
    r = subprocess.run([str(py), '-m', 'pip', *args], capture_output=True, text=True, timeout=timeout,
                       env={**os.environ, 'PIP_DISABLE_PIP_VERSION_CHECK': '1', **(env or {})})
    if r.returncode: raise RuntimeError(f"pip {' '.join(args)} failed ({r.returncode}):\n{(r.stdout + r.stderr)[-3000:]}")
    return r.stdout

def installed(py)->dict:
    "Every distribution installed in the environment of `py`, as `{canonical name: version}`."
    code = "import json, importlib.metadata as m; print(json.dumps({d.metadata['Name']: d.version for d in m.distributions()}))"
    out = subprocess.run([str(py), '-c', code], capture_output=True, text=True, check=True, timeout=120).stdout
    return {canon(k): v for k,v in json.loads(out).items()}

def _public(v): return None if v is None else v.split('+')[0]   # `2.11.0+cpu` is the 2.11.0 that Colab has as `+cu128`

def changed(before:dict, after:dict, names=KEPT)->dict:
    "`{name: (before, after)}` for each of `names` whose installed version (local label aside) is not the same in `after`."
    return {n: (before.get(canon(n)), after.get(canon(n))) for n in names if _public(before.get(canon(n))) != _public(after.get(canon(n)))}

def build_wheel(src, # The project's folder
                dest, # Folder to write the wheel into
               )->Path: # The wheel
    "Build the project's wheel, as a release does (no dependencies bundled), from a copy of `src`: setuptools writes `build/` and `*.egg-info` into the folder it builds, so two builds of one checkout at once (the platform notebooks run side by side) would collide."
    dest = Path(dest); dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as t:
        skip = shutil.ignore_patterns('.*', 'build', 'dist', '*.egg-info', '__pycache__', 'nbs', 'bench', 'tools', 'screenshots', 'models', '_docs', '_proc')
        copy = shutil.copytree(src, Path(t)/'src', ignore=skip)
        r = subprocess.run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '-w', str(dest), str(copy)], capture_output=True, text=True, timeout=600)
        if r.returncode: raise RuntimeError(f"building the wheel failed ({r.returncode}):\n{(r.stdout + r.stderr)[-3000:]}")
    whl, = dest.glob('fastlessons-*.whl')
    return whl

def kernel_env(py, # The environment's `python`
               **extra:str, # More variables for the kernel
              )->dict:
    "The environment variables of a kernel in the environment of `py`: its `bin` first on the `PATH`, no other virtual environment, and `FASTLESSONS_OFFLINE=1` (a lesson takes its offline path even where the internet is there: the tests must not depend on the web)."
    env = {k:v for k,v in os.environ.items() if k not in ('VIRTUAL_ENV', 'PYTHONPATH', 'PYTHONHOME', 'JUPYTER_PATH')}
    env['PATH'] = os.pathsep.join([str(Path(py).parent), env.get('PATH', '')])
    env['VIRTUAL_ENV'] = str(Path(py).parent.parent)
    return {**env, 'PYDEVD_DISABLE_FILE_VALIDATION': '1', 'FASTLESSONS_OFFLINE': '1', **extra}

def fake_platform(name:str, # 'colab', 'kaggle' or 'local'
                  ipython_dir, # A new folder for the kernel's IPython profile
                 )->dict: # Environment variables for the kernel
    "What a kernel on Colab or Kaggle can see of where it runs: Kaggle's `KAGGLE_KERNEL_RUN_TYPE`, or Colab's `google.colab` module, imported at start-up."
    startup = Path(ipython_dir)/'profile_default'/'startup'; startup.mkdir(parents=True, exist_ok=True)
    if name == 'colab':   # Colab's kernel imports its `google.colab` package when it starts
        pkg = Path(ipython_dir)/'colab_site'/'google'/'colab'; pkg.mkdir(parents=True, exist_ok=True)   # `google`: a namespace package, beside protobuf's
        (pkg/'__init__.py').write_text('"A stand-in for Colab\'s own package: only its name is used."\n')
        (startup/'00-colab.py').write_text(f"import sys\nsys.path.append({str(pkg.parent.parent)!r})\nimport google.colab\n")
        return {'IPYTHONDIR': str(ipython_dir), 'COLAB_RELEASE_TAG': 'fastlessons-test'}
    if name == 'kaggle': return {'IPYTHONDIR': str(ipython_dir), 'KAGGLE_KERNEL_RUN_TYPE': 'Interactive'}
    return {'IPYTHONDIR': str(ipython_dir)}

_DIRECTIVE = re.compile(r'^#\|\s*(.*?)\s*$')

def _directives(src:str)->list:
    "The `#| ...` lines at the top of a cell, without the `#|`."
    res = []
    for line in src.splitlines():
        if not (m := _DIRECTIVE.match(line)): break
        res.append(m[1])
    return res

def code_cells(nb:dict, # A notebook, as `nbformat` reads it
               skip=('live', 'slow', 'notest', 'browser'), # Cells with any of these flags are left out, as `nbdev-test` does
              )->list: # The code cells that run, in order
    "The code cells of `nb` that a test run executes: not those flagged in `skip`, nor `eval: false`."
    def runs(c):
        d = _directives(c.source)
        return not any(x in skip for x in d) and not any(re.fullmatch(r'eval:\s*false', x) for x in d)
    return [c for c in nb.cells if c.cell_type == 'code' and runs(c)]

def run_notebook(fn, # The notebook
                 py, # The `python` of the environment the kernel runs in
                 cwd, # Folder it runs in (lessons write beside themselves)
                 env:dict|None=None, # The kernel's environment variables; default `kernel_env(py)`
                 skip=('live', 'slow', 'notest', 'browser'), # Flags of cells to leave out
                 timeout:int=600, # Seconds any one cell may take
                 allow_errors:bool=False, # Go on after a cell raises, keeping its error in its outputs
                ):
    "Execute `fn` top to bottom in a Jupyter kernel running in the environment of `py`; the notebook with its outputs, or `CellExecutionError`."
    import nbformat
    from nbclient import NotebookClient
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager
    nb = nbformat.read(str(fn), as_version=4)
    nb.cells = code_cells(nb, skip)
    with tempfile.TemporaryDirectory() as kdir:
        spec = Path(kdir)/'platform'; spec.mkdir()
        (spec/'kernel.json').write_text(json.dumps(dict(argv=[str(py), '-m', 'ipykernel_launcher', '-f', '{connection_file}'],
                                                        display_name='platform', language='python')))
        # Where there are Unix sockets, the kernel and this client talk through files in `kdir`: no TCP port, which another
        # process may take (or a closed client's sockets still knock on) between the ports being chosen and the kernel binding them.
        ipc = dict(transport='ipc', ip=str(Path(kdir)/'kernel')) if os.name == 'posix' else {}
        km = KernelManager(kernel_name='platform', kernel_spec_manager=KernelSpecManager(kernel_dirs=[kdir]), **ipc)
        client = NotebookClient(nb, km=km, timeout=timeout, startup_timeout=120, allow_errors=allow_errors, resources={'metadata': {'path': str(cwd)}})
        try: client.execute(env=env or kernel_env(py), cwd=str(cwd))
        finally:
            if km.has_kernel: km.shutdown_kernel(now=True)   # nbclient leaves a kernel it did not start itself running
    return nb

def command_path(py, name:str)->str:
    "The console command `name` of the environment of `py` (`name.exe` on Windows)."
    if (p := shutil.which(name, path=str(Path(py).parent))) is None: raise FileNotFoundError(f"no command {name} in {Path(py).parent}")
    return p

def _run(py, work, *args, timeout=900):
    "Run a console command of the environment of `py` in folder `work`; the finished process, or an error with its output."
    env = {**kernel_env(py), 'MPLBACKEND': 'Agg', 'OMP_NUM_THREADS': '1'}
    r = subprocess.run([command_path(py, args[0]), *map(str, args[1:])], cwd=work, env=env, capture_output=True, text=True, timeout=timeout)
    return r

def _ok(r, what):
    if r.returncode: raise AssertionError(f"{what} failed ({r.returncode}):\n{(r.stdout + r.stderr)[-3000:]}")
    return r

def check_plain(whl, # The wheel, from `build_wheel`
                tmp, # A new folder to work in, removed afterwards
                lesson=ROOT/'nbs'/'lessons'/'01_is_it_a_bird.ipynb', # The lesson to run
               )->dict: # What each step printed, and the lesson as it ran
    "A plain install, as a learner makes it: `pip install` of the wheel (no extras); the commands from another folder; a lesson in a kernel of that environment."
    tmp = Path(tmp)
    try: return _check_plain(whl, tmp, lesson)
    finally: shutil.rmtree(tmp, ignore_errors=True)   # an environment holds several GB: the next one needs the room

def _check_plain(whl, tmp, lesson):
    py = make_venv(tmp/'plain')
    pip(py, 'install', str(whl))
    pip(py, 'check')
    have = installed(py)
    assert 'fastlessons' in have and 'accelerate' in have, "the plain install lacks fastlessons or accelerate"
    assert not {'nbdev', 'jupyterlab', 'playwright'} & set(have), "a plain install brought in development tools"
    work = tmp/'elsewhere'; work.mkdir()
    code = 'import fastlessons.all, fastlessons.training, fastlessons.cli; print(fastlessons.__file__)'
    where = _ok(subprocess.run([str(py), '-c', code], cwd=work, capture_output=True, text=True, timeout=600, env=kernel_env(py)), 'import fastlessons.all').stdout.strip()
    assert Path(where).resolve().is_relative_to((tmp/'plain').resolve()), f"fastlessons was imported from {where}, not from the environment"
    res = dict(versions=have)
    res['train'] = _ok(_run(py, work, 'fastlessons-train', '--epochs', '1'), 'fastlessons-train').stdout
    model = work/'models'/'digits'/'model.json'
    ex = sorted((model.parent/'examples').iterdir())[0]
    res['predict'] = _ok(_run(py, work, 'fastlessons-predict', model, ex), 'fastlessons-predict').stdout
    assert res['predict'].split('\t')[0] == str(ex) and res['predict'].split('\t')[1] in ('3', '7'), res['predict']
    res['space'] = _ok(_run(py, work, 'fastlessons-space', model, 'space'), 'fastlessons-space').stdout
    res['check'] = _ok(_run(py, work, 'fastlessons-space', '--check', 'space', timeout=300), 'fastlessons-space --check').stdout
    doc = _run(py, work, 'fastlessons-doctor', '--timeout', '2', timeout=300)
    assert doc.returncode in (0, 1) and doc.stdout.startswith('fastlessons preflight') and not doc.stderr, (doc.stdout, doc.stderr)
    res['doctor'] = doc.stdout
    pip(py, 'install', 'ipykernel')   # a learner's Jupyter
    d = tmp/'plain-lesson'; d.mkdir(); shutil.copy(lesson, d)
    res['lesson'] = run_notebook(d/Path(lesson).name, py, d, env=kernel_env(py, **fake_platform('local', d/'.ipython')))
    return res

def check_platform(name:str, # 'colab' or 'kaggle': `platforms/NAME.txt` holds its versions
                   whl, # The wheel, from `build_wheel`: the lesson's first cell installs it, found through `PIP_FIND_LINKS`
                   tmp, # A new folder to work in, removed afterwards
                   lesson=ROOT/'nbs'/'lessons'/'01_is_it_a_bird.ipynb', # The lesson to run
                   widgets=Path(__file__).parent/'widgets.ipynb', # The widgets' tests, run there too
                  )->dict: # The versions before and after, and the notebooks as they ran
    "An environment with the platform's versions; the lesson on that platform, whose first cell installs fastlessons; none of `KEPT` changed; the widgets."
    tmp = Path(tmp)
    try: return _check_platform(name, whl, tmp, lesson, widgets)
    finally: shutil.rmtree(tmp, ignore_errors=True)   # an environment holds several GB: the next one needs the room

def _check_platform(name, whl, tmp, lesson, widgets):
    py = make_venv(tmp/name)
    pins = read_pins(PLATFORMS/f'{name}.txt')
    pip(py, 'install', '-r', str(PLATFORMS/f'{name}.txt'))
    before = installed(py)
    wrong = {k: (v, before.get(k)) for k,v in pins.items() if _public(before.get(k)) != v}
    assert not wrong, f"the environment does not have {name}'s versions: {wrong}"
    assert 'fastlessons' not in before
    d = tmp/f'{name}-lesson'; d.mkdir(); shutil.copy(lesson, d)
    offline = _setup_offline(py, name, lesson, tmp/f'{name}-offline')
    assert 'Could not install fastlessons' in offline and 'phone-verified' in offline, offline
    nb = run_notebook(d/Path(lesson).name, py, d, env=kernel_env(py, **fake_platform(name, d/'.ipython'), PIP_FIND_LINKS=str(Path(whl).parent)))
    after = installed(py)
    assert 'fastlessons' in after, "the lesson's first cell did not install fastlessons"
    assert not (ch := changed(before, after)), f"installing fastlessons on {name} changed {ch}"
    w = tmp/f'{name}-widgets'; w.mkdir()
    wnb = run_notebook(widgets, py, w, env=kernel_env(py, **fake_platform(name, w/'.ipython')))
    return dict(before=before, after=after, offline=offline, lesson=nb, widgets=wnb)

def _setup_offline(py, name, lesson, d)->str:
    "What the lesson's first cell prints on platform `name` when the package index cannot be reached (Kaggle with its internet off)."
    import nbformat
    nb = nbformat.read(str(lesson), as_version=4)
    nb.cells = [next(c for c in nb.cells if c.cell_type == 'code' and 'KAGGLE_KERNEL_RUN_TYPE' in c.source)]
    d = Path(d); d.mkdir(); nbformat.write(nb, str(d/'setup.ipynb'))
    out = run_notebook(d/'setup.ipynb', py, d, env=kernel_env(py, **fake_platform(name, d/'.ipython'), PIP_NO_INDEX='1', PIP_FIND_LINKS=str(d)),
                       allow_errors=True)
    return '\n'.join(o.get('text', '') if o['output_type'] == 'stream' else f"{o.get('ename')}: {o.get('evalue')}" for o in out.cells[0].outputs)

if __name__ == '__main__':
    import argparse
    p = argparse.ArgumentParser(description="Check one platform for real: `plain` (a plain pip install: the commands, lesson 1), or `colab`/`kaggle` "
                                "(their versions: lesson 1 installing fastlessons, nothing they keep changed, the widgets). Needs nbclient here.")
    p.add_argument('platform', choices=['plain', 'colab', 'kaggle'])
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as t:
        whl = build_wheel(ROOT, Path(t)/'dist')
        print(f"{a.platform}: built {whl.name}", flush=True)
        if a.platform == 'plain':
            r = check_plain(whl, Path(t)/'check')
            print(r['predict'], r['check'], r['doctor'], sep='\n')
        else:
            r = check_platform(a.platform, whl, Path(t)/'check')
            print(f"{a.platform}: fastlessons {r['after']['fastlessons']} installed by the lesson's first cell; kept: " +
                  ', '.join(f"{k} {r['after'].get(canon(k))}" for k in KEPT))
        print(r['lesson'].cells[0].outputs[-1]['text'].strip())
        print(f"{a.platform}: passed")
