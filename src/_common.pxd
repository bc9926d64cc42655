# cython: language_level=3
"""Argument checks shared by every compiled entry point (``_core``, ``_matrix``).

Each check is written once here, as an inline function, and cimported by the
modules that need it, so the phi form and the state-input form raise the same
exception with the same wording for the same mistake.
"""

cimport numpy as cnp
from cpython.float cimport PyFloat_AS_DOUBLE, PyFloat_CheckExact
from cpython.long cimport PyLong_AsSsize_t, PyLong_CheckExact
from libc.math cimport isfinite


cdef extern from "fastscore_simd.h" nogil:
    # The kernel header's pieces both modules use.
    ctypedef struct fs_theta:
        const double *val
        const double *hi
        const double *lo
        int huge
    Py_ssize_t fs_padded(Py_ssize_t d)
    const double FS_SPLIT_MAX
    void fs_split(double x, double *hi, double *lo)
    double fs_dot2_f64(const double *x, const fs_theta *t, Py_ssize_t n, double *rest)
    double fs_log1p(double x)
    void fs_init(int force_split)


cdef extern from *:
    """
    #ifdef _OPENMP
    #include <omp.h>
    #define FS_OPENMP 1
    static int fs_omp_max_threads(void) { return omp_get_max_threads(); }
    static int fs_omp_num_procs(void) { return omp_get_num_procs(); }
    #else
    #define FS_OPENMP 0
    static int fs_omp_max_threads(void) { return 1; }
    static int fs_omp_num_procs(void) { return 1; }
    #endif
    /* More threads than this only cost thread creation (or exhaust it): every
     * result is the same for every count.  omp_get_num_procs() is a system
     * call, so the cap is computed once per process. */
    static int fs_max_threads_cap(void) {
        static int cap = 0;
        if (cap == 0) {
            int procs = 4 * fs_omp_num_procs();
            cap = procs > 8 ? procs : 8;
            if (cap > 1024) cap = 1024;  /* the kernels' per-call limit */
        }
        return cap;
    }

    /* Threads must never make a call slower than one thread would.  After a
     * threaded call that did not beat the single-thread estimate (another
     * process, BLAS threads or the user's own threads held the other cores),
     * the next calls run serially: 1, 2, 4, ... up to FS_BACKOFF_MAX calls
     * after consecutive failures, back to 1 after a success.  The estimate is
     * the calling (master) thread's own pace: its busy seconds per unit of
     * work (fs_clock_master), times all the work.  Serial and threaded calls
     * give the same bits, so this only changes speed.  Each extension module
     * keeps its own counters.  Plain relaxed atomics: callers on several
     * Python threads may race on them, which at worst costs a threaded or a
     * serial call too many. */
    #define FS_BACKOFF_MAX 1024
    static int fs_backoff_skip = 0, fs_backoff_next = 1;
    #ifdef _OPENMP
    static double fs_now(void) { return omp_get_wtime(); }
    static int fs_is_master(void) { return omp_get_thread_num() == 0; }
    #else
    static double fs_now(void) { return 0.0; }
    static int fs_is_master(void) { return 1; }
    #endif
    static int fs_threads_allowed(void) {
        int skip = __atomic_load_n(&fs_backoff_skip, __ATOMIC_RELAXED);
        if (skip <= 0) return 1;
        __atomic_store_n(&fs_backoff_skip, skip - 1, __ATOMIC_RELAXED);
        return 0;
    }
    static void fs_clock_master(double *master, double t0, double units) {
        if (fs_is_master()) {
            master[0] += fs_now() - t0;
            master[1] += units;
        }
    }
    static void fs_threads_judge(double t_start, const double *master, double units) {
        int next;
        if (master[1] <= 0) return;
        next = __atomic_load_n(&fs_backoff_next, __ATOMIC_RELAXED);
        if (fs_now() - t_start < 0.9 * master[0] / master[1] * units) {
            __atomic_store_n(&fs_backoff_next, 1, __ATOMIC_RELAXED);
        } else {
            __atomic_store_n(&fs_backoff_skip, next, __ATOMIC_RELAXED);
            __atomic_store_n(&fs_backoff_next, next < FS_BACKOFF_MAX ? 2 * next : next,
                             __ATOMIC_RELAXED);
        }
    }
    """
    const int FS_OPENMP
    int fs_omp_max_threads() nogil
    int fs_omp_num_procs() nogil
    int fs_max_threads_cap() nogil
    double fs_now() nogil
    int fs_threads_allowed() nogil
    void fs_clock_master(double *master, double t0, double units) nogil
    void fs_threads_judge(double t_start, const double *master, double units) nogil


cdef inline bint is_native_aligned(cnp.ndarray arr) noexcept:
    return cnp.PyArray_ISNOTSWAPPED(arr) and cnp.PyArray_ISALIGNED(arr)


cdef inline bint is_real_kernel_array(object x) noexcept:
    """A base-class NumPy array of float32 or float64 the kernel reads as it is
    (subclasses, such as masked arrays, go through coercion)."""
    if not cnp.PyArray_CheckExact(x):
        return False
    cdef int t = cnp.PyArray_TYPE(<cnp.ndarray>x)
    return (t == cnp.NPY_DOUBLE or t == cnp.NPY_FLOAT) and is_native_aligned(<cnp.ndarray>x)


cdef inline bint is_intp_array(object x) noexcept:
    """A base-class, native, aligned intp array (actions and offsets as read)."""
    return (cnp.PyArray_CheckExact(x) and cnp.PyArray_TYPE(<cnp.ndarray>x) == cnp.NPY_INTP
            and is_native_aligned(<cnp.ndarray>x))


cdef inline void byte_extent(cnp.ndarray arr, char **lo, char **hi) noexcept:
    """[lo, hi) bounds the bytes of arr."""
    cdef char *start = <char *>cnp.PyArray_DATA(arr)
    cdef Py_ssize_t i, step, low = 0, high = cnp.PyArray_ITEMSIZE(arr)
    if cnp.PyArray_SIZE(arr) == 0:
        lo[0] = hi[0] = start
        return
    for i in range(cnp.PyArray_NDIM(arr)):
        step = cnp.PyArray_STRIDES(arr)[i] * (cnp.PyArray_DIMS(arr)[i] - 1)
        if step < 0:
            low += step
        else:
            high += step
    lo[0] = start + low
    hi[0] = start + high


cdef inline check_out_disjoint(cnp.ndarray out, tuple inputs, str name="out"):
    """ValueError if the bytes of out may overlap those of an input array."""
    cdef char *out_lo
    cdef char *out_hi
    cdef char *lo
    cdef char *hi
    byte_extent(out, &out_lo, &out_hi)
    for x in inputs:
        if cnp.PyArray_Check(x):
            byte_extent(<cnp.ndarray>x, &lo, &hi)
            if out_lo < hi and lo < out_hi:
                raise ValueError(f"{name} must not share memory with an input array")


cdef inline cnp.ndarray check_out(object out, int dtype, int ndim, cnp.npy_intp *dims,
                                  tuple inputs, str name="out"):
    """out as the result array: a writeable, aligned ndarray of exactly this
    dtype (native byte order) and shape that overlaps neither itself nor an input."""
    cdef cnp.ndarray arr
    cdef int i
    if not cnp.PyArray_Check(out):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(out).__name__}")
    arr = <cnp.ndarray>out
    if cnp.PyArray_TYPE(arr) != dtype or not cnp.PyArray_ISNOTSWAPPED(arr):
        raise TypeError(
            f"{name} must have dtype {cnp.PyArray_DescrFromType(dtype)} (native byte order) "
            f"for these inputs, got {arr.dtype}")
    shape_ok = cnp.PyArray_NDIM(arr) == ndim
    for i in range(ndim):
        shape_ok = shape_ok and cnp.PyArray_DIMS(arr)[i] == dims[i]
    if not shape_ok:
        expected = []
        for i in range(ndim):
            expected.append(dims[i])
        expected = tuple(expected)
        raise ValueError(f"{name} must have shape {expected}, got {(<object>arr).shape}")
    if not cnp.PyArray_ISWRITEABLE(arr) or not cnp.PyArray_ISALIGNED(arr):
        raise ValueError(f"{name} must be a writeable, aligned array")
    if cnp.PyArray_SIZE(arr) > 1:
        for i in range(ndim):
            if cnp.PyArray_STRIDES(arr)[i] == 0 and cnp.PyArray_DIMS(arr)[i] > 1:
                raise ValueError(f"{name} must not overlap itself (it has a zero stride)")
    check_out_disjoint(arr, inputs, name)
    return arr


cdef inline double as_temperature(object temperature) except? -1.0:
    cdef double tau
    if PyFloat_CheckExact(temperature):
        tau = PyFloat_AS_DOUBLE(temperature)
    elif isinstance(temperature, (bool, str, bytes)) or type(temperature).__name__ in ("bool", "bool_"):
        raise TypeError(
            f"temperature must be a real number, got {type(temperature).__name__}")
    else:
        try:
            tau = float(temperature)
        except (TypeError, ValueError):
            raise TypeError(
                f"temperature must be a real number, got {type(temperature).__name__}") from None
    if not (tau > 0.0 and isfinite(tau)):
        raise ValueError(f"temperature must be finite and > 0, got {tau!r}")
    return tau


cdef inline int as_thread_count(object n_threads) except -1:
    """n_threads as a count: None is what OpenMP allows now; values beyond the
    cap are clipped (the result is the same for every count)."""
    cdef Py_ssize_t n
    cdef int cap = fs_max_threads_cap()
    if n_threads is None:
        return fs_omp_max_threads()
    if PyLong_CheckExact(n_threads):
        try:
            n = PyLong_AsSsize_t(n_threads)
        except OverflowError:
            n = cap if n_threads > 0 else 0
    elif isinstance(n_threads, bool) or type(n_threads).__name__ in ("bool", "bool_"):
        raise TypeError("n_threads must be an integer or None, got bool")
    else:
        try:
            return as_thread_count(n_threads.__index__())
        except (TypeError, AttributeError):
            raise TypeError(
                f"n_threads must be an integer or None, got {type(n_threads).__name__}") from None
    if n < 1:
        raise ValueError(f"n_threads must be >= 1, got {n_threads}")
    return <int>min(n, cap)
