"""The documentation matches the code.

* Every ```python block of README.md and of the pages under docs/ runs, from
  the repository root, a page's blocks in order in one namespace (as a reader
  runs them), in a subprocess with a time budget.  A block followed directly
  by a ```text block must print exactly that text, and a block that prints
  anything must be followed by one (so no printed line goes unchecked).  A
  block can be skipped only with a reason, by the line
  ``<!-- skip-test: why -->`` before it.
* The README's speed table has only times and ratios docs/speed.md has.
* Each signature row of docs/arguments.md's tables is the function's
  ``inspect.signature``, and every function has a row.
* Every public name (``__all__`` of each public module) has a docstring and
  an entry in the API reference pages (docs/api/*.rst), and the Examples of
  its docstring run as doctests.
* numpydoc.validate over every public function, class and method finds
  Parameters, Returns and Examples (Raises for the entry points).
* No attribute of a public module looks public without being in its
  ``__all__``.
* The site builds with warnings as errors (skipped without Sphinx).

With FASTSCORE_CI set (.ci/run) a public module or optional package that
does not import fails these checks instead of skipping them.
"""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(p for p in DOCS.rglob("*.md") if "_build" not in p.parts)]
PUBLIC_MODULES = ["fastscore", "fastscore.matrix", "fastscore.choice", "fastscore.dask",
                  "fastscore.reference", "fastscore.torch", "fastscore.torch.matrix"]
# A page's blocks together; the guides' examples take seconds.
PAGE_BUDGET_S = 240

# In CI (FASTSCORE_CI set, as .ci/run does) a public module or an optional
# package that does not import fails these tests instead of skipping them,
# so that no part of the API drops out of the checks unnoticed; only the
# names in FASTSCORE_CI_OPTIONAL (comma-separated; .ci/run lists PyTorch's
# when its wheel is not on the machine) may still skip.
IN_CI = bool(os.environ.get("FASTSCORE_CI"))
CI_OPTIONAL = {s.strip() for s in os.environ.get("FASTSCORE_CI_OPTIONAL", "").split(",")
               if s.strip()}


def _may_skip(name):
    return not IN_CI or name in CI_OPTIONAL or name.split(".")[0] in CI_OPTIONAL


def need(name):
    """pytest.importorskip, but an ImportError outside CI_OPTIONAL fails in CI."""
    if _may_skip(name):
        return pytest.importorskip(name)
    import importlib
    return importlib.import_module(name)


def public_module(modname):
    """The module, or None where it cannot be imported here (fastscore.torch
    without PyTorch, fastscore.dask without Dask); in CI that raises."""
    import importlib

    try:
        return importlib.import_module(modname)
    except ImportError:
        if _may_skip(modname):
            return None
        raise


FENCE = re.compile(r"^```(\S*)\s*$")
SKIP = re.compile(r"^<!--\s*skip-test:\s*(\S.*?)\s*-->\s*$")


def code_blocks(text):
    """[(line, language, code, skip reason or None, expected output or None)]
    of a Markdown page's fenced blocks with a language (line: the opening
    fence's, from 1).  The expected output of a python block is the ```text
    block right after it, with nothing but blank lines between."""
    lines = text.splitlines()
    blocks, i = [], 0
    last, last_end = None, -1  # the previous fenced block (None: no language) and its end
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        end = next((j for j in range(i + 1, len(lines)) if lines[j].rstrip() == "```"), None)
        assert end is not None, f"unclosed code fence at line {i + 1}"
        lang, code = m.group(1), "\n".join(lines[i + 1:end]) + "\n"
        adjacent = not any(s.strip() for s in lines[last_end + 1:i])
        if lang == "text" and last is not None and last[1] == "python" and adjacent:
            last[4] = code
        block = None
        if lang:
            prev = next((s for s in reversed(lines[:i]) if s.strip()), "")
            skip = SKIP.match(prev)
            block = [i + 1, lang, code, skip.group(1) if skip else None, None]
            blocks.append(block)
        last, last_end, i = block, end, end + 1
    return [tuple(b) for b in blocks]


# Runs a page's blocks in one namespace; after each block it writes a marker
# to stdout, so that every block's output can be compared on its own.
DRIVER = r"""
import json, sys
blocks = json.load(sys.stdin)
ns = {"__name__": "__main__"}
for line, code in blocks:
    exec(compile(code, f"<block at line {line}>", "exec"), ns)
    sys.stdout.flush()
    print("\0end of block %d\0" % line, flush=True)
"""


def python_pages():
    return [p for p in PAGES if any(b[1] == "python" for b in code_blocks(p.read_text()))]


def test_pages_have_python_blocks():
    """The collection below finds the README's and the guides' examples."""
    names = {p.name for p in python_pages()}
    assert {"README.md", "policy.md", "choice.md"} <= names, names


def skipped_blocks():
    """The skip reasons of the python blocks marked skip-test, one param each."""
    return [pytest.param(b[3], id=f"{p.relative_to(ROOT)}:{b[0]}")
            for p in python_pages() for b in code_blocks(p.read_text())
            if b[1] == "python" and b[3] is not None]


@pytest.mark.parametrize("reason", skipped_blocks())
def test_skipped_blocks(reason):
    """Each block marked skip-test shows in the summary, with its reason."""
    assert len(reason) > 10, "a skipped block needs a reason"
    pytest.skip(reason)


@pytest.mark.parametrize("page", python_pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_python_blocks_run(page):
    blocks = [b for b in code_blocks(page.read_text()) if b[1] == "python"]
    run = [b for b in blocks if b[3] is None]
    for name in _needed_modules(run):
        need(name)
    # From the root, "python -c" imports the fastscore built in place there.
    proc = subprocess.run([sys.executable, "-c", DRIVER], input=json.dumps(
        [(b[0], b[2]) for b in run]), capture_output=True, text=True, cwd=ROOT,
        timeout=PAGE_BUDGET_S)
    assert proc.returncode == 0, f"{page.name}:\n{proc.stderr}"
    outputs = proc.stdout.split("\0")
    printed = {int(marker.split()[-1]): out for out, marker in zip(outputs[0::2], outputs[1::2])}
    assert sorted(printed) == [b[0] for b in run]
    unchecked = [line for line, _, _, _, expected in run
                 if expected is None and printed[line].strip()]
    assert not unchecked, (f"{page.name}: the blocks at lines {unchecked} print but have no "
                           f"```text block of their expected output after them")
    for line, _, _, _, expected in run:
        if expected is not None:
            assert _lines(printed[line]) == _lines(expected), \
                f"{page.name}:{line} printed:\n{printed[line]}"


def _lines(text):
    return [s.rstrip() for s in text.strip("\n").splitlines()]


def _needed_modules(blocks):
    """Optional packages the blocks import (the test skips without them)."""
    optional = {"pandas", "dask", "zarr", "distributed", "scipy", "matplotlib", "torch"}
    found = set()
    for _, _, code, _, _ in blocks:
        for m in re.finditer(r"^\s*(?:import|from)\s+([A-Za-z_]\w*)", code, re.M):
            if m.group(1) in optional:
                found.add(m.group(1))
    if any("fastscore.choice" in b[2] for b in blocks):
        found.add("pandas")
    if any("fastscore.dask" in b[2] for b in blocks):
        found.add("dask")
    if any("fastscore.torch" in b[2] for b in blocks):
        found.add("torch")
    return sorted(found)


def test_code_block_parser():
    text = "\n".join([
        "intro", "```python", "print(1)", "```", "", "```text", "1", "```",
        "<!-- skip-test: needs a Zarr store -->", "```python", "open('x.zarr')", "```",
        "```", "plain", "```", "```python", "x = 2", "```", "words", "```text", "2", "```",
    ])
    blocks = code_blocks(text)
    assert [(b[0], b[1]) for b in blocks] == [(2, "python"), (6, "text"), (10, "python"),
                                             (16, "python"), (20, "text")]
    assert blocks[0][2] == "print(1)\n" and blocks[0][4] == "1\n"
    assert blocks[2][3] == "needs a Zarr store" and blocks[2][4] is None
    assert blocks[3][4] is None  # text between the blocks: not its output


# --------------------------------------------------------------------------
# The README's speed table traces to docs/speed.md
# --------------------------------------------------------------------------

MEASURE = re.compile(r"(?<![\w.])\d[\d.]*(?:-\d[\d.]*)?(?:x\b| (?:ns|us|ms|s)\b)")


def test_readme_speed_rows_are_in_speed_md():
    """Every time and ratio in the README's speed table (a time like
    ``434 us``, a ratio like ``1.41x``) is written the same way in
    docs/speed.md, whose tables name the run each comes from."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Speed and accuracy"):]
    section = section[:section.index("\n## ", 1)]
    rows = [s for s in section.splitlines() if s.startswith("| ") and "---" not in s][1:]
    assert len(rows) >= 4, rows
    speed = (DOCS / "speed.md").read_text()
    missing = [(m, row.split("|")[1].strip()) for row in rows for m in MEASURE.findall(row)
               if m not in speed]
    assert not missing, f"README numbers not in docs/speed.md: {missing}"
    assert MEASURE.findall("| x 4308 x 4 | 6.9 ms | 5.9x xlogit, 2.6-4.8x, 0.80 s |") == \
        ["6.9 ms", "5.9x", "2.6-4.8x", "0.80 s"]


# --------------------------------------------------------------------------
# docs/arguments.md's signature tables
# --------------------------------------------------------------------------

SIGNATURE_ROW = re.compile(r"^\|\s*`((?:fastscore\.)?\w+)\((.*?)\)`\s*\|")


def signature_rows(text):
    """[(section module, function name, the row's parameter list, line)] of
    the rows of docs/arguments.md's tables whose first cell is a call
    ``name(params)``; rows under the ``fastscore.matrix`` heading name
    functions of that module, the others ``fastscore.name``."""
    module, rows = "fastscore", []
    for i, line in enumerate(text.splitlines(), 1):
        if line.startswith("## "):
            module = "fastscore.matrix" if "`fastscore.matrix`" in line else "fastscore"
        m = SIGNATURE_ROW.match(line)
        if m:
            name = m.group(1)
            if name.startswith("fastscore."):
                name = name[len("fastscore."):]
            rows.append((module, name, m.group(2), i))
    return rows


def test_signature_row_parser():
    text = "\n".join([
        "| function | returns |", "|---|---|",
        "| `fastscore.score(phi, theta, a, *, mask=None)` | x |",
        "## `fastscore.matrix`: the state-input form",
        "| `kl(s, W_ref, W, *, grad=False)` | y \\| z |",
    ])
    assert signature_rows(text) == [("fastscore", "score", "phi, theta, a, *, mask=None", 3),
                                    ("fastscore.matrix", "kl", "s, W_ref, W, *, grad=False", 5)]


def test_argument_tables_match_the_signatures():
    """Each row's call is the function's signature as inspect gives it (names,
    order, keyword-only marker and defaults), and every function of
    fastscore's and fastscore.matrix's __all__ has a row: a stale row, a
    keyword added without updating the table, or a missing function fails."""
    import importlib
    import inspect

    rows = signature_rows((DOCS / "arguments.md").read_text())
    stale, seen = [], set()
    for module, name, params, line in rows:
        real = str(inspect.signature(getattr(importlib.import_module(module), name)))
        if f"({params})" != real:
            stale.append(f"arguments.md:{line} {module}.{name}({params}) but the code has {real}")
        seen.add((module, name))
    assert not stale, "\n".join(stale)
    import fastscore
    import fastscore.matrix
    missing = [f"{mod.__name__}.{n}" for mod in (fastscore, fastscore.matrix) for n in mod.__all__
               if callable(getattr(mod, n)) and n != "show_config"
               and (mod.__name__, n) not in seen]
    assert not missing, f"no row in docs/arguments.md: {missing}"


# --------------------------------------------------------------------------
# The API reference
# --------------------------------------------------------------------------

def public_names():
    """[(module, name)] of every public module's ``__all__``; modules that
    cannot be imported here (fastscore.torch without PyTorch, fastscore.dask
    without Dask) are left out."""
    names = []
    for modname in PUBLIC_MODULES:
        mod = public_module(modname)
        if mod is not None:
            names += [(mod, n) for n in mod.__all__ if n != "__version__"]
    return names


def reference_entries():
    """{module: names} listed in autosummary directives of docs/api/*.rst."""
    entries = {}
    for page in sorted((DOCS / "api").glob("*.rst")):
        module = None
        lines = page.read_text().splitlines()
        for i, line in enumerate(lines):
            m = re.match(r"\.\. currentmodule:: (\S+)", line)
            if m:
                module = m.group(1)
            if line.startswith(".. autosummary::"):
                for item in lines[i + 1:]:
                    if item and not item.startswith(" "):
                        break
                    name = item.strip()
                    if name and not name.startswith(":"):
                        entries.setdefault(module, set()).add(name)
    return entries


def test_reference_lists_every_public_name():
    entries = reference_entries()
    missing = [f"{mod.__name__}.{n}" for mod, n in public_names()
               if n not in entries.get(mod.__name__, set())]
    assert not missing, f"not in docs/api/*.rst: {missing}"
    assert len(public_names()) >= 30


def test_reference_lists_only_public_names():
    for module, names in reference_entries().items():
        mod = public_module(module)
        if mod is None:
            continue
        extra = names - set(mod.__all__)
        assert not extra, f"{module}: {sorted(extra)} listed but not in __all__"


def test_public_modules_import_in_ci():
    """Where FASTSCORE_CI is set, every public module imports (the API checks
    above then cover all of them); elsewhere those that cannot are named."""
    missing = [m for m in PUBLIC_MODULES if public_module(m) is None]
    if missing:
        pytest.skip(f"not importable here, left out of the API checks: {missing}")


def test_no_public_looking_name_outside_all():
    """Every attribute of a public module whose name has no leading
    underscore is in its ``__all__``, modules (``np``, submodules) and the
    ``from __future__`` flag aside: a helper imported under its own name
    (``HighLevelGraph``, ``check_constant``) would look public and be in no
    reference page."""
    import __future__
    import types

    leaks = []
    for modname in PUBLIC_MODULES:
        mod = public_module(modname)
        if mod is None:
            continue
        for name, obj in vars(mod).items():
            if (name.startswith("_") or name in mod.__all__ or isinstance(obj, types.ModuleType)
                    or isinstance(obj, __future__._Feature)):
                continue
            leaks.append(f"{modname}.{name}")
    assert not leaks, f"public-looking names not in __all__ (import them as _name): {leaks}"


def test_every_public_name_has_a_docstring():
    import inspect

    bare = [f"{mod.__name__}.{n}" for mod, n in public_names()
            if len((inspect.getdoc(getattr(mod, n)) or "").strip()) < 20]
    assert not bare, f"no docstring: {bare}"


def docstring_examples():
    """One param per public name (or public method) whose docstring has
    Examples; found when the module imports."""
    import doctest

    params = []
    finder = doctest.DocTestFinder(recurse=False)
    for modname in PUBLIC_MODULES:
        mod = public_module(modname)
        if mod is None:
            continue
        for name in mod.__all__:
            obj = getattr(mod, name)
            members = [(name, obj)]
            if isinstance(obj, type):
                members += [(f"{name}.{m}", f) for m, f in vars(obj).items()
                            if not m.startswith("_") and callable(f)]
            for qual, member in members:
                for test in finder.find(member, f"{modname}.{qual}", globs={}):
                    if test.examples:
                        params.append(pytest.param(test, id=test.name))
    return params


@pytest.mark.parametrize("test", docstring_examples())
def test_docstring_examples(test):
    """The Examples sections of the reference run and print what they show."""
    import doctest

    # An example that imports an optional library (pandas for fastscore.choice)
    # skips where it is not installed, as the other tests of that module do.
    for example in test.examples:
        for m in re.finditer(r"^\s*(?:import|from)\s+(\w+)", example.source, re.M):
            if m.group(1) != "fastscore":
                need(m.group(1))
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    out = []
    result = runner.run(test, out=out.append)
    assert result.failed == 0, "".join(out)


def test_every_public_class_documents_its_methods():
    """The reference shows each class's public methods: each needs a docstring."""
    import inspect

    bare = []
    for mod, n in public_names():
        obj = getattr(mod, n)
        if not inspect.isclass(obj) or issubclass(obj, BaseException):
            continue
        for attr, member in inspect.getmembers(obj, inspect.isfunction):
            if not attr.startswith("_") and not (inspect.getdoc(member) or "").strip():
                bare.append(f"{mod.__name__}.{n}.{attr}")
    assert not bare, f"no docstring: {bare}"


# --------------------------------------------------------------------------
# numpydoc sections
# --------------------------------------------------------------------------

# fastscore.reference is left out of the section checks: it is the tests' and
# the benchmarks' plain-NumPy baseline (the code a user would write), not an
# API to learn; each of its functions takes the parameters of the fastscore
# function it mirrors, documented there (checked below).
NUMPYDOC_MODULES = [m for m in PUBLIC_MODULES if m != "fastscore.reference"]
# numpydoc.validate codes that fail: no docstring, a parameter missing,
# unknown or without a description, no Returns or a return value without a
# description, no Examples.
NUMPYDOC_CODES = {"GL08", "PR01", "PR02", "PR07", "RT01", "RT03", "EX01"}
# Classes a user gets from another call, never constructs: their constructor
# arguments are internal, so they need Attributes (what a user reads) and
# Examples instead of Parameters.
MADE_BY = {
    "fastscore.choice.FittedModel": "a model's fit",
    "fastscore.choice.ChoiceResults": "ConditionalLogit.fit",
    "fastscore.choice.MixedLogitResults": "MixedLogit.fit",
    "fastscore.choice.Summary": "FittedModel.summary",
}
# The public entry points that raise documented errors on bad input: their
# docstrings need a Raises section.  Every function of the array APIs but
# show_config, the choice models' constructors, and the methods that check
# their arguments or data.
_CHOICE_RAISING = ["ConditionalLogit", "ConditionalLogit.fit", "ConditionalLogit.loglik",
                   "MixedLogit", "MixedLogit.fit", "MixedLogit.loglik", "MixedLogit.hessian",
                   "MixedLogit.start_values", "FittedModel.conf_int", "FittedModel.to_frame",
                   "FittedModel.wtp", "ChoiceResults.predict", "ChoiceResults.elasticity",
                   "MixedLogitResults.predict"]


def _raises_required(qual):
    module, _, name = qual.rpartition(".")
    if module in ("fastscore", "fastscore.matrix", "fastscore.dask", "fastscore.torch",
                  "fastscore.torch.matrix"):
        return name != "show_config"
    return qual in {f"fastscore.choice.{n}" for n in _CHOICE_RAISING}


def numpydoc_targets():
    """[qualified name] of every public function and class of NUMPYDOC_MODULES
    and the public methods of the classes (those defined in fastscore,
    inherited ones included, once each, under the class that defines them
    when that class is public); exceptions and warnings aside (raised, not
    called: their docstrings say when)."""
    import inspect

    names = []
    for modname in NUMPYDOC_MODULES:
        mod = public_module(modname)
        if mod is None:
            continue
        public = {getattr(mod, n) for n in mod.__all__ if inspect.isclass(getattr(mod, n))}
        for n in mod.__all__:
            obj = getattr(mod, n)
            if n == "__version__" or (inspect.isclass(obj) and issubclass(obj, Exception)):
                continue
            names.append(f"{modname}.{n}")
            if not inspect.isclass(obj):
                continue
            for klass in obj.__mro__:
                defined_here = klass.__module__.startswith("fastscore")
                if not defined_here or (klass is not obj and klass in public):
                    continue
                names += [f"{modname}.{n}.{a}" for a, f in vars(klass).items()
                          if not a.startswith("_") and inspect.isfunction(f)]
    return sorted(set(names))


@pytest.mark.parametrize("qual", numpydoc_targets())
def test_numpydoc_sections(qual):
    """numpydoc.validate finds no missing section (Parameters, Returns,
    Examples; Raises for the entry points above) nor a parameter documented
    that the function does not have."""
    need("numpydoc")
    import inspect

    from numpydoc.docscrape import NumpyDocString
    from numpydoc.validate import validate

    result = validate(qual)
    codes = set(NUMPYDOC_CODES)
    if qual in MADE_BY:
        codes -= {"PR01", "PR02", "PR07"}
    problems = [f"{code} {msg}" for code, msg in result["errors"] if code in codes]
    obj = _resolve(qual)
    doc = NumpyDocString(inspect.getdoc(obj) or "")
    if qual in MADE_BY and not doc["Attributes"]:
        problems.append(f"no Attributes section (made by {MADE_BY[qual]}, not by hand)")
    if _raises_required(qual) and not doc["Raises"]:
        problems.append("no Raises section")
    assert not problems, f"{qual}:\n  " + "\n  ".join(problems)


def _resolve(qual):
    import importlib

    parts = qual.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for p in parts[i:]:
            obj = getattr(obj, p)
        return obj
    raise ImportError(qual)


def test_numpydoc_targets_cover_the_api():
    targets = set(numpydoc_targets())
    assert {"fastscore.score", "fastscore.matrix.kl", "fastscore.choice.MixedLogit.fit",
            "fastscore.choice.FittedModel.wtp", "fastscore.choice.ChoiceResults.elasticity",
            "fastscore.choice.Summary"} <= targets
    assert "fastscore.choice.ChoiceResults.wtp" not in targets  # under FittedModel, once
    assert all(_raises_required(q) for q in ("fastscore.kl", "fastscore.dask.tree_sum"))


def test_reference_functions_take_the_documented_parameters():
    """fastscore.reference's functions take (a subset of) the parameters of
    the fastscore function each mirrors, where those are documented."""
    import inspect

    import fastscore
    import fastscore.matrix
    import fastscore.reference as R

    mirrors = {"matrix_entropy_grad": fastscore.matrix.entropy,
               "matrix_sample_score": fastscore.matrix.score}
    for name in R.__all__:
        twin = mirrors.get(name) or (getattr(fastscore.matrix, name[len("matrix_"):])
                                     if name.startswith("matrix_") else getattr(fastscore, name))
        extra = set(inspect.signature(getattr(R, name)).parameters) - set(
            inspect.signature(twin).parameters)
        assert not extra, f"fastscore.reference.{name}: {sorted(extra)} not in {twin.__name__}"


# --------------------------------------------------------------------------
# The site
# --------------------------------------------------------------------------

def test_site_builds_without_warnings(tmp_path):
    """The README's docs command, into a fresh folder (an incremental build
    would not repeat the warnings of unchanged pages).  It skips without the
    docs extra even in CI, whose own step builds the site after the tests."""
    for name in ("sphinx", "numpydoc", "myst_parser", "pydata_sphinx_theme", "pandas", "dask"):
        pytest.importorskip(name)
    proc = subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b",
                           "html", "-d", str(tmp_path / "doctrees"), str(DOCS),
                           str(tmp_path / "html")], capture_output=True, text=True, cwd=ROOT,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr
    html = tmp_path / "html"
    for page in ("index", "policy", "choice", "dask", "accuracy", "speed", "reliability",
                 "development", "design", "performance", "torch", "api/fastscore", "api/choice",
                 "api/torch",
                 "api/generated/fastscore.choice.MixedLogit"):
        assert (html / f"{page}.html").is_file(), page
