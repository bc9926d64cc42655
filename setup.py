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


def _openmp_flags(compiler, cflags):
    """(compile_args, link_args) with which the compiler builds and links an
    OpenMP shared object (as the extension will be), or (None, why)."""
    flags = ["-fopenmp"]
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "probe.c")
        with open(src, "w") as f:
            f.write(OPENMP_PROBE)
        try:
            objs = compiler.compile([src], output_dir=tmp, extra_postargs=cflags + flags)
            compiler.link_shared_object(
                objs, os.path.join(tmp, "probe.so"), extra_postargs=flags
            )
        except Exception as exc:  # CompileError, LinkError: the message says why
            return None, str(exc)
    return (flags, flags), ""


class BuildExt(build_ext):
    def build_extensions(self):
        if self.compiler.compiler_type == "msvc":
            sys.exit(
                "fastscore: the kernel uses GCC/Clang vector extensions; "
                "build with GCC or Clang (MSVC is not supported)."
            )
        # IEEE semantics are required: the error-free sums and the NaN checks
        # must not be reassociated or folded away, whatever CFLAGS says.
        cflags = ["-O3", "-fno-fast-math", "-ffp-contract=off", "-fno-math-errno"]
        if _env_flag("FASTSCORE_NATIVE"):
            cflags.append("-march=native")
        ldflags = []
        omp, why = _openmp_flags(self.compiler, cflags)
        if omp is None:
            msg = (
                "fastscore: could not build and link an OpenMP program "
                f"({why.strip() or 'no reason given'}); "
                "building a serial extension (n_threads is then ignored)."
            )
            if _env_flag("FASTSCORE_REQUIRE_OPENMP"):
                sys.exit(msg + " FASTSCORE_REQUIRE_OPENMP is set: stopping.")
            warnings.warn(msg)
        else:
            cflags += omp[0]
            ldflags += omp[1]
        recorded = " ".join([os.environ.get("CFLAGS", "").strip()] + cflags).strip()
        for ext in self.extensions:
            ext.extra_compile_args = cflags + ext.extra_compile_args
            ext.extra_link_args = ldflags + ext.extra_link_args
            ext.define_macros.append(("FASTSCORE_CFLAGS", '"%s"' % recorded.replace('"', "")))
        super().build_extensions()


extensions = [
    Extension(
        "fastscore._core",
        sources=["src/_core.pyx"],
        include_dirs=[np.get_include(), "src"],
        depends=["src/fastscore_simd.h", "src/fastscore_rng.h", "src/_common.pxd"],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        # Link libm by name, so that exp and fma are versioned references to
        # the current symbols (unversioned, glibc bound exp to its oldest
        # version, the compatibility wrapper with SVID error handling).
        libraries=[] if sys.platform == "win32" else ["m"],
    ),
    Extension(
        "fastscore._matrix",
        sources=["src/_matrix.pyx"],
        include_dirs=[np.get_include(), "src"],
        depends=["src/fastscore_simd.h", "src/fastscore_rng.h", "src/fastscore_vexp.h"],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        libraries=[] if sys.platform == "win32" else ["m"],
    ),
    Extension(
        "fastscore._mixed",
        sources=["src/_mixed.pyx"],
        include_dirs=[np.get_include(), "src"],
        depends=["src/fastscore_simd.h", "src/fastscore_mixed.h", "src/fastscore_mixed_panel.h",
                 "src/_common.pxd"],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        libraries=[] if sys.platform == "win32" else ["m"],
    ),
]

setup(
    ext_modules=cythonize(
        extensions,
        compiler_directives={"language_level": "3"},
    ),
    cmdclass={"build_ext": BuildExt},
)
