"""Build the fastscore extension.

The compiler is probed for OpenMP: without it the build warns and produces a
serial module, unless FASTSCORE_REQUIRE_OPENMP=1, which makes that an error.
FASTSCORE_NATIVE=1 opts in to -march=native (a binary for this CPU only).
"""
import os
import sys
import tempfile
import textwrap
import warnings

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

OPENMP_PROBE = textwrap.dedent(
    """
    #include <omp.h>
    int main(void) {
        int n = 0;
        #pragma omp parallel reduction(+:n)
        n += 1;
        return n > 0 ? 0 : 1;
    }
    """
)


def _env_flag(name):
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _openmp_flags(compiler):
    """(compile_args, link_args) that build and link an OpenMP program, or None."""
    if compiler.compiler_type == "msvc":
        candidates = [(["/openmp"], [])]
    else:
        candidates = [(["-fopenmp"], ["-fopenmp"])]
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "probe.c")
        with open(src, "w") as f:
            f.write(OPENMP_PROBE)
        for cflags, ldflags in candidates:
            try:
                objs = compiler.compile([src], output_dir=tmp, extra_postargs=cflags)
                compiler.link_executable(
                    objs, os.path.join(tmp, "probe"), extra_postargs=ldflags
                )
            except Exception:
                continue
            return cflags, ldflags
    return None


class BuildExt(build_ext):
    def build_extensions(self):
        unix = self.compiler.compiler_type != "msvc"
        cflags = ["-O3", "-ffp-contract=off", "-fno-math-errno"] if unix else ["/O2", "/fp:precise"]
        if unix and _env_flag("FASTSCORE_NATIVE"):
            cflags.append("-march=native")
        ldflags = []
        omp = _openmp_flags(self.compiler)
        if omp is None:
            msg = (
                "fastscore: the C compiler does not support OpenMP; "
                "building a serial extension (n_threads is then ignored)."
            )
            if _env_flag("FASTSCORE_REQUIRE_OPENMP"):
                sys.exit(msg + " FASTSCORE_REQUIRE_OPENMP is set: stopping.")
            warnings.warn(msg)
        else:
            cflags += omp[0]
            ldflags += omp[1]
        for ext in self.extensions:
            ext.extra_compile_args = cflags + ext.extra_compile_args
            ext.extra_link_args = ldflags + ext.extra_link_args
            ext.define_macros.append(("FASTSCORE_CFLAGS", '"%s"' % " ".join(cflags)))
        super().build_extensions()


extensions = [
    Extension(
        "fastscore._core",
        sources=["src/_core.pyx"],
        include_dirs=[np.get_include(), "src"],
        depends=["src/fastscore_simd.h"],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    )
]

setup(
    ext_modules=cythonize(
        extensions,
        compiler_directives={"language_level": "3"},
    ),
    cmdclass={"build_ext": BuildExt},
)
