# cython: language_level=3
"""The shared layer of the compiled modules (``_core``, ``_matrix``, and any new one).

Everything here is written once and cimported (``from _common cimport ...``),
so every module reports the same error, with the same wording, for the same
mistake, and runs its threads by the same rules (docs/design.md, "Layers").
A module that cimports it gets:

* ``Status``, the one status enum of every ``noexcept nogil`` helper, and
  ``fs_record_failure``, which keeps the first failing state (and its
  status) of a threaded pass whatever the thread count;
  ``raise_common_status`` raises for the statuses every module shares.
* Work thresholds: ``threads_pay(work, n_threads)`` (fork threads: enough
  work, more than one thread, OpenMP compiled in, and the thread back-off
  agrees) and ``releases_gil(work)``; work is counted in elements read (or
  multiply-adds), the same unit in every module.  The back-off itself
  (``fs_clock_master``, ``fs_threads_judge``) judges each threaded call.
* Argument checks: real kernel arrays, ``out=`` arrays (``check_out``,
  ``check_out_disjoint``), ``temperature``, ``n_threads``, ``seed``
  (``seed_key``).
* Owned actions, masks and offsets: ``one_action``, ``own_actions``,
  ``own_mask`` and ``own_offsets`` check an argument and make the call's
  own C-contiguous copy (small ones in the caller's stack ``Room``, else a
  new array the caller keeps alive for the call), which the
  pass reads: another Python thread writing to the caller's array while the
  GIL is released changes nothing.  ``first_bad_choice`` then finds the
  first state whose taken action is out of range or masked, or (no action)
  whose every action is masked, and ``raise_bad_choice`` raises for it.
  A call's states are padded (``n_actions`` rows each; a mask (N,) for
  every state or (B, N)) or ragged (``offsets``; a mask of one entry per row).
* The kernel header's pieces every module uses (``fs_theta``, ``fs_split``,
  Dot2, ``fs_log1p``), ``init_kernels`` (the kernel set, once per module, as
  FASTSCORE_NO_FMA says) and ``store_real`` (a float32 or float64 result,
  and whether it is finite in that dtype).
"""

cimport numpy as cnp
from cpython.float cimport PyFloat_AS_DOUBLE, PyFloat_CheckExact
from cpython.long cimport PyLong_AsSsize_t, PyLong_AsUnsignedLongLong, PyLong_CheckExact
from cpython.number cimport PyNumber_Index
from cpython.pycapsule cimport PyCapsule_GetPointer
from libc.math cimport exp, expm1, fabs, isfinite
from libc.stdint cimport uint64_t
from libc.string cimport memcpy
from numpy.random cimport bitgen_t


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
    /* Keep the first failing state (and its status) whatever the thread count. */
    static void fs_record_failure(Py_ssize_t b, int st, Py_ssize_t *bad, int *first) {
    #ifdef _OPENMP
    #pragma omp critical(fastscore_failure)
    #endif
        {
            if (b < *bad) {
                *bad = b;
                *first = st;
            }
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
    void fs_record_failure(Py_ssize_t b, int st, Py_ssize_t *bad, int *first) nogil


cdef enum Status:
    # What a noexcept nogil helper reports; the first failing state's status
    # (fs_record_failure) becomes the call's exception.
    OK = 0
    NONFINITE_LOGIT = 1
    NONFINITE_RESULT = 2   # a result not finite in the output dtype
    NO_MEMORY = 3
    ALL_MASKED = 4
    NONFINITE_S = 5        # the state-input form: NaN or inf in s
    NONFINITE_W = 6        # the state-input form: NaN or inf in W (found by the pass)
    KL_FAR = 7             # kl: the two policies' logits too far apart (state_kl)


cdef enum:
    # Work (elements read, or multiply-adds) below which a call runs on the
    # calling thread: a fork/join costs microseconds, a small call's whole
    # budget ...
    PARALLEL_MIN_WORK = 1 << 16
    # ... and below which it keeps the GIL (releasing it costs more).
    NOGIL_MIN_WORK = 1 << 12


cdef inline bint threads_pay(double work, int n_threads) noexcept nogil:
    """Whether a call of this much work runs threaded: fs_threads_allowed
    (the back-off) is asked last, as it counts the calls it refuses."""
    return (FS_OPENMP and n_threads > 1 and work >= PARALLEL_MIN_WORK
            and fs_threads_allowed())


cdef inline bint releases_gil(double work) noexcept nogil:
    return work >= NOGIL_MIN_WORK


cdef inline void init_kernels():
    """Pick the kernel set when a module loads; FASTSCORE_NO_FMA=1 forces the
    generic one (Dekker's split, no FMA), as a CPU without FMA would use."""
    import os
    fs_init(os.environ.get("FASTSCORE_NO_FMA", "").strip().lower() in ("1", "true", "yes", "on"))


cdef inline bint store_real(char *dst, double x, bint f32) noexcept nogil:
    """Write x as float32 or float64; False if the stored value is not finite."""
    cdef float xf
    if f32:
        xf = <float>x
        memcpy(dst, &xf, sizeof(float))
        return isfinite(xf)
    memcpy(dst, &x, sizeof(double))
    return isfinite(x)


cdef enum:
    # kl (both forms): above KL_BIG, x is too large for p expm1(x) (it may
    # overflow where p is tiny), and that product is exp(log p + x) - p.
    # Where a term needs exp(log p + x) with |log p| + |x| beyond KL_EXACT,
    # the two large numbers cancel to an exponent off by about 2u times it
    # (4e-12 here): policies that far apart are refused (KL_FAR) rather than
    # answered inexactly.
    KL_BIG = 600
    KL_EXACT = 16384


cdef inline double p_expm1(double p, double log_p, double x) noexcept nogil:
    """p (e^x - 1), without overflow where p e^x <= 1 and x is large."""
    if x <= KL_BIG:
        return p * expm1(x)
    return exp(log_p + x) - p


cdef inline double expm1_minus(double x) noexcept nogil:
    """f(x) = e^x - 1 - x >= 0 to full relative accuracy: for |x| <= 1/2 by
    its series sum_{m=2}^{17} x^m / m! by Horner's rule (the first term left
    out is below 1e-17 of the sum; the coefficients are 1/m! rounded), where
    expm1(x) - x would cancel."""
    cdef double t
    if fabs(x) > 0.5:
        return expm1(x) - x
    t = 2.8114572543455206e-15
    t = t * x + 4.779477332387385e-14
    t = t * x + 7.647163731819816e-13
    t = t * x + 1.1470745597729725e-11
    t = t * x + 1.6059043836821613e-10
    t = t * x + 2.08767569878681e-09
    t = t * x + 2.505210838544172e-08
    t = t * x + 2.755731922398589e-07
    t = t * x + 2.7557319223985893e-06
    t = t * x + 2.48015873015873e-05
    t = t * x + 0.0001984126984126984
    t = t * x + 0.001388888888888889
    t = t * x + 0.008333333333333333
    t = t * x + 0.041666666666666664
    t = t * x + 0.16666666666666666
    t = t * x + 0.5
    return x * x * t


cdef inline raise_kl_far(str state, str ref_name, str name):
    raise ValueError(
        f"kl: {ref_name} and {name} are too far apart for {state}: its logits under the two "
        f"differ by more than {KL_EXACT:g} (or their difference overflows: a tiny "
        f"temperature), where KL(pi_ref || pi) computed from their difference would lose "
        f"its accuracy (such a KL is of the order of that difference); compare closer "
        f"policies, or scale {ref_name} and {name} down")


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


# ---------------------------------------------------------------------------
# Sampling keys.

cdef inline uint64_t int_key(object s) except? 0:
    try:
        return PyLong_AsUnsignedLongLong(s)
    except OverflowError:
        raise ValueError(f"seed must be in [0, 2**64), got {s}") from None


cdef inline uint64_t generator_key(object gen) except? 0:
    """The Generator's next 64-bit draw, under its lock: the bits of
    gen.integers(0, 2**64, dtype=np.uint64) (and of random_raw() for every
    64-bit bit generator), without the Python call."""
    bg = gen.bit_generator
    cdef bitgen_t *rng = <bitgen_t *>PyCapsule_GetPointer(bg.capsule, "BitGenerator")
    cdef uint64_t key
    with bg.lock:
        key = rng.next_uint64(rng.state)
    return key


cdef inline uint64_t seed_key(object seed) except? 0:
    """The 64-bit key of one sample call's counter-based generator
    (fastscore_rng.h): an int in [0, 2**64) is the key itself; a
    numpy.random.Generator gives one 64-bit draw (and advances); None takes
    8 bytes of OS entropy."""
    if PyLong_CheckExact(seed):
        return int_key(seed)
    if seed is None:
        import os
        return int_key(int.from_bytes(os.urandom(8), "little"))
    from numpy.random import Generator
    if isinstance(seed, Generator):
        return generator_key(seed)
    if isinstance(seed, bool) or type(seed).__name__ in ("bool", "bool_"):
        raise TypeError("seed must be an int, None or a numpy.random.Generator, got bool")
    try:
        k = PyNumber_Index(seed)
    except TypeError:
        raise TypeError(
            f"seed must be an int, None or a numpy.random.Generator, got {type(seed).__name__}"
        ) from None
    return int_key(k)


# ---------------------------------------------------------------------------
# Actions, masks and offsets: the call's own copies, checked before the pass.

cdef inline object one_action(object a, Py_ssize_t n_actions, Py_ssize_t *out):
    """The action of one state into out (None), or NotImplemented when a is
    not an int (it needs coercion first)."""
    if not PyLong_CheckExact(a):
        return NotImplemented
    try:
        out[0] = PyLong_AsSsize_t(a)
    except OverflowError:
        raise IndexError(f"a = {a} is out of range for N = {n_actions} actions") from None
    return None


cdef enum:
    OWN_ROOM = 512      # bytes of each copy kept in the caller's Room
    OWN_ROOM_ACTS = 64  # actions (OWN_ROOM bytes of 8-byte intp)


cdef struct Room:
    # Stack room for the copies of small calls: a new array costs about as
    # much as a one-state call's whole pass.
    Py_ssize_t act[OWN_ROOM_ACTS]
    char mask[OWN_ROOM]


cdef inline object own_copy(cnp.ndarray x, char *room, Py_ssize_t room_bytes,
                             const char **data):
    """x's elements in C order as the call's own copy (x at most 2-D): in
    room (room_bytes, aligned for x) when they fit, returning None, else
    in a new array, returned for the caller to keep alive."""
    cdef Py_ssize_t n = cnp.PyArray_NBYTES(x), size = cnp.PyArray_ITEMSIZE(x), i, j, r, c
    cdef const char *src = <const char *>cnp.PyArray_DATA(x)
    cdef int nd = cnp.PyArray_NDIM(x)
    if n > room_bytes:
        copy = cnp.PyArray_NewCopy(x, cnp.NPY_CORDER)
        data[0] = <const char *>cnp.PyArray_DATA(<cnp.ndarray>copy)
        return copy
    data[0] = room
    if cnp.PyArray_IS_C_CONTIGUOUS(x):
        memcpy(room, src, n)
        return None
    r = cnp.PyArray_DIMS(x)[0] if nd == 2 else 1
    c = cnp.PyArray_DIMS(x)[nd - 1] if nd > 0 else 1
    for i in range(r):
        for j in range(c):
            memcpy(room + (i * c + j) * size,
                   src + (i * cnp.PyArray_STRIDES(x)[0] if nd == 2 else 0)
                   + (j * cnp.PyArray_STRIDES(x)[nd - 1] if nd > 0 else 0), size)
    return None


cdef inline object own_actions(object a, Py_ssize_t n_states, Room *room, const char **data,
                               Py_ssize_t *stride):
    """A batch's actions (n_states,) as the call's own copy (own_copy; data,
    stride set), or NotImplemented when a is not an intp array (it needs
    coercion first)."""
    if not is_intp_array(a):
        return NotImplemented
    if cnp.PyArray_NDIM(<cnp.ndarray>a) != 1 or cnp.PyArray_DIMS(<cnp.ndarray>a)[0] != n_states:
        raise ValueError(
            f"a must have shape ({n_states},), one action per state, got {(<object>a).shape}")
    stride[0] = sizeof(Py_ssize_t)
    return own_copy(<cnp.ndarray>a, <char *>room.act, sizeof(room.act), data)


cdef inline object own_mask(object mask, Py_ssize_t n_states, Py_ssize_t n_actions, bint batch,
                            Py_ssize_t ragged_rows, Room *room, const char **data,
                            Py_ssize_t *sb, Py_ssize_t *sn):
    """The legal actions as the call's own copy (own_copy; data and the strides sb
    between states, 0 for one mask shared by every state, and sn between
    actions set), or NotImplemented when mask is not a bool array (it needs
    coercion first).  Shapes: (N,), or (B, N) for a batch; ragged
    (ragged_rows >= 0), one entry per row."""
    if not (cnp.PyArray_CheckExact(mask) and cnp.PyArray_TYPE(<cnp.ndarray>mask) == cnp.NPY_BOOL):
        return NotImplemented
    cdef cnp.ndarray m = <cnp.ndarray>mask
    cdef int nd = cnp.PyArray_NDIM(m)
    cdef cnp.npy_intp *dims = cnp.PyArray_DIMS(m)
    if ragged_rows >= 0:
        if nd != 1 or dims[0] != ragged_rows:
            raise ValueError(
                f"with offsets=, mask must have shape ({ragged_rows},), one entry per row "
                f"of phi, got {(<object>m).shape}")
    elif not ((nd == 1 and dims[0] == n_actions)
              or (batch and nd == 2 and dims[0] == n_states and dims[1] == n_actions)):
        expected = f"({n_actions},) or ({n_states}, {n_actions})" if batch else f"({n_actions},)"
        raise ValueError(f"mask must have shape {expected}, got {(<object>m).shape}")
    sb[0] = n_actions if nd == 2 else 0
    sn[0] = 1
    return own_copy(m, room.mask, OWN_ROOM, data)


cdef inline object own_offsets(object offsets, Py_ssize_t n_rows, Py_ssize_t *n_states,
                               Py_ssize_t *max_rows):
    """Ragged states' row offsets (B + 1,) as the call's own checked copy
    (state b owns rows offsets[b]:offsets[b + 1] of n_rows), or
    NotImplemented when offsets is not an intp array (it needs coercion)."""
    if not is_intp_array(offsets):
        return NotImplemented
    if cnp.PyArray_NDIM(<cnp.ndarray>offsets) != 1 or cnp.PyArray_DIMS(<cnp.ndarray>offsets)[0] < 1:
        raise ValueError(
            f"offsets must be 1-D of length B + 1 (B states), got shape {(<object>offsets).shape}")
    copy = cnp.PyArray_NewCopy(<cnp.ndarray>offsets, cnp.NPY_CORDER)
    cdef const Py_ssize_t *o = <const Py_ssize_t *>cnp.PyArray_DATA(<cnp.ndarray>copy)
    cdef Py_ssize_t b, n_offs = cnp.PyArray_DIMS(<cnp.ndarray>copy)[0], widest = 0
    if o[0] != 0:
        raise ValueError(f"offsets[0] must be 0, got {o[0]}")
    for b in range(n_offs - 1):
        if o[b + 1] <= o[b]:
            if o[b + 1] == o[b]:
                raise ValueError(
                    f"state {b} has no actions (offsets[{b}] == offsets[{b + 1}] == {o[b]}); "
                    f"a state needs at least one")
            raise ValueError(
                f"offsets must be nondecreasing: offsets[{b + 1}] = {o[b + 1]} < "
                f"offsets[{b}] = {o[b]}")
        widest = max(widest, o[b + 1] - o[b])
    max_rows[0] = widest
    if o[n_offs - 1] != n_rows:
        raise ValueError(
            f"offsets[-1] must equal the number of rows of phi ({n_rows}), got {o[n_offs - 1]}")
    n_states[0] = n_offs - 1
    return copy


cdef struct Choices:
    # A call's taken actions and legal actions as the pass reads them (the
    # owned copies above); strides in bytes.
    const char *act          # NULL: no taken action
    Py_ssize_t act_s
    const char *mask         # NULL: every action legal
    Py_ssize_t mask_sb, mask_sn
    const Py_ssize_t *offsets  # ragged: (B + 1,); NULL: n_actions rows a state
    Py_ssize_t n_actions


cdef inline Py_ssize_t choice_rows(const Choices *c, Py_ssize_t b,
                                   const char **mask) noexcept nogil:
    """State b's rows, and its mask's first entry (NULL: no mask)."""
    if c.offsets != NULL:
        mask[0] = NULL if c.mask == NULL else c.mask + c.offsets[b] * c.mask_sn
        return c.offsets[b + 1] - c.offsets[b]
    mask[0] = NULL if c.mask == NULL else c.mask + b * c.mask_sb
    return c.n_actions


cdef inline Py_ssize_t first_bad_choice(const Choices *c, Py_ssize_t n_states) noexcept nogil:
    """The first state whose taken action is out of range or masked or,
    without actions, whose every action is masked; -1 if none."""
    cdef Py_ssize_t b, k, n, a
    cdef const char *m
    cdef bint legal
    if c.act == NULL and c.mask == NULL:
        return -1
    if c.act != NULL and c.mask == NULL:
        # The common batch: a range check a state, no more.
        for b in range(n_states):
            a = (<const Py_ssize_t *>(c.act + b * c.act_s))[0]
            n = c.n_actions if c.offsets == NULL else c.offsets[b + 1] - c.offsets[b]
            if a < 0 or a >= n:
                return b
        return -1
    for b in range(n_states):
        n = choice_rows(c, b, &m)
        if c.act != NULL:
            a = (<const Py_ssize_t *>(c.act + b * c.act_s))[0]
            if a < 0 or a >= n or (m != NULL and not m[a * c.mask_sn]):
                return b
            continue
        legal = False
        for k in range(n):
            if m[k * c.mask_sn]:
                legal = True
                break
        if not legal:
            return b
        if c.offsets == NULL and c.mask_sb == 0:
            break  # one mask for every state
    return -1


cdef inline raise_all_masked(Py_ssize_t b, bint batch):
    state = f" of state {b}" if batch else ""
    raise ValueError(f"every action{state} is masked; at least one must be legal")


cdef inline raise_bad_choice(const Choices *c, Py_ssize_t b, bint batch):
    """The error for state b, first_bad_choice's answer."""
    cdef const char *m
    cdef Py_ssize_t k, n = choice_rows(c, b, &m), a
    if c.act == NULL:
        raise_all_masked(b, batch)
    a = (<const Py_ssize_t *>(c.act + b * c.act_s))[0]
    where = f"a[{b}]" if batch else "a"
    if a < 0 or a >= n or m == NULL:
        of = f" of state {b}" if c.offsets != NULL else ""
        raise IndexError(f"{where} = {a} is out of range for N = {n} actions{of}")
    for k in range(n):
        if m[k * c.mask_sn]:
            raise ValueError(f"the taken action {where} = {a} is masked (illegal)")
    raise_all_masked(b, batch)


cdef inline raise_common_status(Status st, Py_ssize_t b, bint batch):
    """Raise for the statuses every module reports alike (else nothing)."""
    if st == NO_MEMORY:
        raise MemoryError("fastscore: could not allocate per-thread scratch")
    if st == ALL_MASKED:
        raise_all_masked(b, batch)
