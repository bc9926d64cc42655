#!/usr/bin/env bash
# Run fastscore under memory checkers.  Usage (from anywhere):
#
#   tools/sanitize.sh asan       # build with ASan + UBSan, run the whole test suite
#   tools/sanitize.sh valgrind   # normal build, a representative subset under memcheck
#   tools/sanitize.sh asan -k fuzz   # extra arguments go to pytest
#
# Both modes work on a private copy of the working tree (tracked and untracked
# files, no build outputs) in $FASTSCORE_SANITIZE_DIR (default .sanitize/ in
# the checkout, ignored by git), with a venv of their own: they never touch the
# normal in-place build.  The venvs are reused between runs; the extension is
# rebuilt every run.  Exit status: pytest's (non-zero on any sanitizer report,
# since every report aborts the process or sets valgrind's error exit code).
#
# Suppressions (tools/sanitize/*.supp) cover allocations made inside CPython's
# and NumPy's own allocators only (interpreter state that is never freed at
# exit); nothing in fastscore is suppressed: every malloc in src/ is checked
# by LeakSanitizer, every read and write by ASan and memcheck.  Python objects
# that fastscore might leak are counted by tests/test_leaks.py instead.
set -euo pipefail

mode=${1:-}
[ $# -gt 0 ] && shift
case "$mode" in
    asan|valgrind) ;;
    *) echo "usage: $0 {asan|valgrind} [pytest args...]" >&2; exit 2 ;;
esac

repo=$(cd "$(dirname "$0")/.." && pwd)
supp="$repo/tools/sanitize"
root=${FASTSCORE_SANITIZE_DIR:-$repo/.sanitize}
work="$root/$mode"
python=${PYTHON:-python3}
jobs=$(nproc 2>/dev/null || echo 2)

echo "== fastscore sanitize: $mode in $work"
mkdir -p "$work"

# --- a private copy of the working tree (what git would commit, plus
#     untracked files not ignored), without build outputs -----------------------
rm -rf "$work/src"
mkdir -p "$work/src"
(cd "$repo" && git ls-files -z --cached --others --exclude-standard) |
    (cd "$repo" && xargs -0 cp --parents -t "$work/src" 2>/dev/null || true)

# --- a venv of its own -----------------------------------------------------------
if [ ! -x "$work/venv/bin/python" ]; then
    "$python" -m venv "$work/venv"
    "$work/venv/bin/python" -m pip install -q --upgrade pip
fi
# shellcheck disable=SC1091
. "$work/venv/bin/activate"
# scipy: fastscore.matrix cimports its BLAS (scipy.linalg.cython_blas) to build
python -m pip install -q "setuptools>=77" "Cython>=3.1" "numpy>=2" "scipy>=1.11" "pytest>=7" \
    "hypothesis>=6" "threadpoolctl>=3" "mpmath>=1.3"

cd "$work/src"
# The test suite runs children from temporary directories: they import this copy.
export PYTHONPATH="$work/src"
t0=$(date +%s)

if [ "$mode" = asan ]; then
    san="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
    echo "== building with: $san"
    CC=${CC:-gcc-12} CFLAGS="-g $san" LDFLAGS="$san" \
        python setup.py -q build_ext --inplace -j "$jobs" > build.log 2>&1 ||
        { cat build.log; exit 1; }
    libasan=$(${CC:-gcc-12} -print-file-name=libasan.so)
    libubsan=$(${CC:-gcc-12} -print-file-name=libubsan.so)
    # Prove the module really is instrumented (a silent plain build would
    # make a clean run meaningless).
    for so in fastscore/_core*.so fastscore/_matrix*.so; do
        if ! nm -D "$so" | grep -q __asan_report; then
            echo "error: $so is not instrumented with ASan" >&2
            exit 1
        fi
    done
    t1=$(date +%s)
    echo "== built in $((t1 - t0)) s; running pytest under ASan + UBSan + LSan"
    export LD_PRELOAD="$libasan $libubsan"
    export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:exitcode=86:halt_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1:check_initialization_order=1:print_suppressions=0:allocator_may_return_null=1"
    export LSAN_OPTIONS="suppressions=$supp/lsan.supp:print_suppressions=0"
    export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:exitcode=87"
    # Every allocation through malloc, so ASan sees each object's bounds.
    export PYTHONMALLOC=malloc
    # The child processes of the test suite inherit all of the above.
    export FASTSCORE_SANITIZER=asan
    set +e
    python -m pytest -q -p no:cacheprovider -x "$@"
    status=$?
    set -e
    unset LD_PRELOAD
else
    CFLAGS="-g" python setup.py -q build_ext --inplace -j "$jobs" > build.log 2>&1 ||
        { cat build.log; exit 1; }
    t1=$(date +%s)
    echo "== built in $((t1 - t0)) s; running the subset under valgrind memcheck"
    export PYTHONMALLOC=malloc
    export FASTSCORE_SANITIZER=valgrind
    # Fewer threads: valgrind serialises them anyway.
    export OMP_NUM_THREADS=2
    # The representative subset: every bad-input row, the review regressions,
    # every call variant of the leak test (fast path, coercion, malloc'd
    # scratch, both threaded drivers, each error path) for every function,
    # the fuzzer (its children traced too) and the Python-thread test.
    export FASTSCORE_FUZZ_EXAMPLES=${FASTSCORE_FUZZ_EXAMPLES:-60}
    export FASTSCORE_CONCURRENCY_ROUNDS=1
    subset=(tests/test_errors.py tests/test_review_regressions.py
            tests/test_leaks.py::test_variants_behave_as_labelled
            tests/test_fuzz.py
            tests/test_concurrency.py::test_python_threads_get_the_serial_results)
    set +e
    # --undef-value-errors=no: CPython 3.11's int.from_bytes hands out a
    # small int built from an uninitialised byte at start-up, and the taint
    # then reaches every later object (valgrind-only noise).  Addressability
    # (reads and writes outside a block, use after free, bad frees) and
    # definite leaks are checked.
    valgrind --tool=memcheck --error-exitcode=88 --errors-for-leak-kinds=definite \
        --leak-check=full --show-leak-kinds=definite --undef-value-errors=no \
        --suppressions="$supp/valgrind-python.supp" --gen-suppressions=no \
        --num-callers=30 --quiet \
        --trace-children=yes \
        python -m pytest -q -p no:cacheprovider -x "${subset[@]}" "$@"
    status=$?
    set -e
fi
t2=$(date +%s)
echo "== $mode: exit status $status; build $((t1 - t0)) s, tests $((t2 - t1)) s, total $((t2 - t0)) s"
exit $status
