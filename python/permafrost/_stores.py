"""Stores: what holds a frozen graph's bytes in this process, and how they reach another one.

A store (permafrost._core.Store) owns one frozen graph: the arena freeze() wrote, an image file
open() mapped, or a memfd another process shared and this one mapped. Every view holds its store;
the store unmaps its bytes when the last view goes, or at close().

This module keeps three per-process caches, all holding stores weakly, so that a graph is mapped
once however many of its views arrive, and unmapped when nothing uses it:
- images by path (with the file's identity when it was opened: a path whose file was replaced is
  opened anew), by the file's identity (another path to the same file maps nothing new) and by
  path and the id save() wrote into the image (a view pickled before its path got a newer file);
- shared arenas by the identity (device, inode) of their memfd.

Pickling:
- plain pickle: a view of an image is (path, offset, image id), mapped again by the receiver; any
  other view travels by value (the receiver freezes its own copy, a small one into a pool shared
  by many: frozen_value).
- multiprocessing's ForkingPickler (Pool, Process, Queue, concurrent.futures): a view of a
  freeze()/build result travels as its store plus an offset, and the store as the descriptor of a
  sealed memfd holding the graph, passed by multiprocessing itself (reduction.DupFd): freeze()
  and the builders write into a memfd arena, so nothing is copied (see _core._share); every
  receiver maps that memfd read-only and shares its pages.

Thread safety: the caches are plain dicts changed under the GIL; two threads opening one path at
once may map it twice, which only costs the second mapping.
"""
import errno as _errno
import fcntl as _fcntl
import mmap as _mmap
import os as _os
import sys as _sys
import threading as _threading
import time as _time
import uuid as _uuid
import weakref as _weakref
import multiprocessing as _mp
from multiprocessing import connection as _mp_connection
from multiprocessing import context as _mp_context
from multiprocessing import reduction as _reduction
from multiprocessing import util as _mp_util

from . import _core

# path -> (weak reference to the store, the file's identity when it was opened)
_images: "dict[str, tuple[_weakref.ref[_core.Store], tuple[int, ...]]]" = {}
# (path, image id saved in the image's header) -> store. With the path: the id is the file's own
# word, so an image saved elsewhere with a copy of another's id (or with none, as an older
# version's) stood in for that image when a view of it was unpickled.
_images_by_id: "_weakref.WeakValueDictionary[tuple[str, str], _core.Store]" = (
    _weakref.WeakValueDictionary())
# (st_dev, st_ino) of a shared memfd or of a mapped image file -> store
_shared: "_weakref.WeakValueDictionary[tuple[int, ...], _core.Store]" = (
    _weakref.WeakValueDictionary())

_SEALS = _fcntl.F_SEAL_WRITE | _fcntl.F_SEAL_SHRINK | _fcntl.F_SEAL_GROW


def forget():
    """Drop every cache entry (tests: make the next open() or unpickling map anew)."""
    _images.clear()
    _images_by_id.clear()
    _shared.clear()
    _image_files.clear()


def _live(store):
    return store is not None and not _core._closed(store)


def _identity(path):
    st = _os.stat(path)
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _remember_image(path, store, identity):
    def forget_path(ref, path=path):
        # Runs whenever the store dies, also in a signal handler or another callback between two
        # bytecodes of this one: the entry may be gone by the del ("Exception ignored in
        # forget_path ... KeyError" on stderr). A newer entry removed in that window costs one
        # lookup in _shared at the next open.
        entry = _images.get(path)
        if entry is not None and entry[0] is ref:
            _images.pop(path, None)
    _images[path] = (_weakref.ref(store, forget_path), identity)
    _images_by_id[(path, _core._store_id(store))] = store
    _image_identity[store] = identity
    _shared[identity[:2]] = store


def absolute_path(path):
    """path (a str, bytes or os.PathLike, as builtins.open takes) as an absolute str, as the
    kernel would resolve it from here: joined to the working directory. Not os.path.abspath,
    which drops `x/..` by its text: past a symlink x that names another directory than the
    kernel's (a/link/../f is b/f when a/link is ../b/deep). Not realpath either: a Reloader must
    follow a symlink that a deploy moves. "" names no file, as for builtins.open (joined, it was
    the working directory: "not a regular file")."""
    given = _os.fspath(path)
    if not given:  # named in the error as given (b"" for b""), as builtins.open names it
        raise FileNotFoundError(_errno.ENOENT, _os.strerror(_errno.ENOENT), given)
    path = _os.fsdecode(given)
    absolute = path if _os.path.isabs(path) else _os.path.join(_os.getcwd(), path)
    # `.` and repeated slashes name what they follow, whatever it is, so they are dropped as
    # text, as abspath did: views pickle the path, and a receiver finds the image it maps by
    # (path, id), so ./img.pfi and img.pfi must be one. A trailing one stays: the kernel then
    # wants a directory. POSIX leaves a leading // to the system; Linux reads it as /.
    parts = [part for part in absolute.split("/") if part not in ("", ".")]
    trail = "/" if parts and absolute.endswith(("/", "/.")) else ""
    return "/" + "/".join(parts) + trail


def image_store(path, image_id=None, populate=False):
    """The store of the image at path (absolute), mapped once per process.

    With image_id (an unpickled view), the image saved with that id: first the one this process
    maps from that path (also when the path now holds a newer file), else the file at path, and
    ValueError when that is another image. populate: as open()'s, for a new mapping only."""
    if image_id is not None:
        store = _images_by_id.get((path, image_id))
        if _live(store):
            return store
    entry = _images.get(path)
    if entry is not None and image_id is None:
        store = entry[0]()
        if _live(store):
            try:
                current = _identity(path)
            except OSError:
                current = None
            # Live again after the stat, which let other threads run: one may have closed it
            # (open() itself raised "the image is closed").
            if current == entry[1] and _live(store):
                return store
    # The file, not the spelling of its path, is the image: one mapped under another name (a
    # symlink, a bytes path, another relative path) is that mapping, unless it changed since
    # (a stat, not an open: a file that became unreadable keeps its mapping).
    store = _mapped_as(_identity(path), image_id)
    if store is not None:
        _remember_image(path, store, _image_identity[store])
        return store
    # A new mapping: the path is opened once, and the file mapped is the one fstat describes. A
    # stat of the path and then an open of it mapped a file renamed over the path in between,
    # remembered under the identity of the one before (a later open of that one, by another
    # name, gave the other's data). O_NONBLOCK: a FIFO at the path would block here (the open
    # refuses it); then back to blocking, an ordinary descriptor for the reads.
    fd = _os.open(path, _os.O_RDONLY | _os.O_CLOEXEC | _os.O_NONBLOCK | _os.O_NOCTTY)
    try:
        _os.set_blocking(fd, True)
        st = _os.fstat(fd)
        identity = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        store = _mapped_as(identity, image_id)  # replaced since the stat by one mapped already
        if store is not None:
            _remember_image(path, store, identity)
            return store
        store = _core._open_store(path, fd, populate)
    finally:
        _os.close(fd)
    _remember_image(path, store, identity)
    if image_id is not None and _core._store_id(store) != image_id:
        raise ValueError(f"{path}: the image was replaced since this view was pickled "
                         "(a newer image was saved at that path)")
    return store


def _mapped_as(identity, image_id):
    """The live store of the image file of this identity (device, inode, size, mtime) and, when
    given, this image id; else None."""
    store = _shared.get(identity[:2])
    if _live(store) and _image_identity.get(store) == identity and (
            image_id is None or _core._store_id(store) == image_id):
        return store
    return None


def image_value(path, offset, image_id=None):
    """Unpickling of a view of an image: map the image (once per process) and view offset."""
    return _core._store_view(image_store(path, image_id), offset)


class LostView:
    """What a view of an image sent by a process that may exit first (a Pool worker's result)
    becomes when a newer image was saved at its path before the receiver read it, and the
    receiver does not map the image itself: the bytes are gone for it. Every use raises
    ValueError saying so. Raising while unpickling killed a Pool's result thread, and the Pool
    hung for ever (ProcessPoolExecutor: BrokenProcessPool); the error now reaches the code that
    uses the result. Keep the image mapped in the receiver (a Reloader there too) to receive
    such views whole."""

    __slots__ = ("why",)

    def __init__(self, why):
        self.why = why

    def _lost(self, *args, **kwargs):
        raise ValueError(self.why)

    __getitem__ = __iter__ = __len__ = __contains__ = __reversed__ = _lost
    __lt__ = __le__ = __gt__ = __ge__ = _lost

    # A lost view may arrive as a dict key or a set member, which unpickling hashes: raising
    # there would kill the Pool's result thread again. It hashes by identity and is equal to
    # itself only; any other comparison needs the bytes and raises.
    __hash__ = object.__hash__

    def __eq__(self, other):
        if other is self:
            return True
        self._lost()

    def __ne__(self, other):
        if other is self:
            return False
        self._lost()

    __reduce__ = __reduce_ex__ = __copy__ = __deepcopy__ = _lost
    get = keys = values = items = thaw = copy = index = count = close = _lost

    def __getattr__(self, name):  # AttributeError, as hasattr() and getattr(o, n, d) expect
        raise AttributeError(f"{name}: {self.why}")

    def __repr__(self):
        return f"<permafrost.LostView: {self.why}>"


def received_image_value(path, offset, image_id):
    """Unpickling of a view of an image from a process that may exit first: image_value, or a
    LostView where the image was replaced at its path and this process does not map it."""
    try:
        store = image_store(path, image_id)
    except (ValueError, OSError) as e:  # replaced, or gone, or no longer an image that opens
        return LostView(f"permafrost: this view, received from another process, is lost: {e}")
    return _core._store_view(store, offset)


def new_image_id():
    return _uuid.uuid4().hex


# ----- unpickling by value ----------------------------------------------------------------------

# A graph unpickled by value (plain pickle of a view that is not in an image) no larger than this
# is copied out of its arena into a shared pool of read-only memory, and its arena freed: an
# arena takes one of the process's 1024 slots, and pickle.loads() of a list of 3,000 records
# (each view goes by value on its own) raised MemoryError ("all 1024 arena slots are in use").
_POOLED_UP_TO = 64 << 10
# A larger one keeps its arena (multiprocessing sends it on by reference, as a freeze() result)
# while fewer than this many do; past that it is copied into a read-only mapping of its own and
# its arena freed: pickle.loads() of 1,500 rows of 70 KB raised the MemoryError above, and a Pool
# worker sent 2,000 large rows of a replaced image died unpickling them (the Pool hung).
_BIG_IN_ARENAS = 256
# id(store) -> weak reference, removed when the store goes. Not a WeakSet: one that another thread
# changed while this one iterated it raised RuntimeError ("Set changed size during iteration").
_big_in_arenas: "dict[int, _weakref.ref[_core.Store]]" = {}
# The count and the add are one step. Reentrant: a finalizer run by the garbage collector inside
# the step may unpickle a view too.
_big_lock = _threading.RLock()
_POOL_BYTES = 1 << 20
_pool = None  # [read-only anonymous mmap, next free offset]
# Reentrant, with _filling: a signal handler or a finalizer (__del__) may unpickle a view between
# any two bytecodes of _pooled, in the thread that holds the lock. It waited for that thread, its
# own, for ever; it now keeps its arena instead (see _pooled).
_pool_lock = _threading.RLock()
_filling = False


def _reset_pool_lock_in_child():
    # A fork while another thread held the lock left it held for ever. The pool itself stays: it
    # is MAP_PRIVATE anonymous memory, so what the child copies into it lands in pages of its own.
    global _pool_lock, _filling, _big_lock
    _pool_lock = _threading.RLock()
    _filling = False
    _big_lock = _threading.RLock()


_os.register_at_fork(after_in_child=_reset_pool_lock_in_child)


def _pooled(data):
    """A read-only memoryview of a copy of data, 16-byte aligned, in the current pool (a full
    pool's pages are freed once no view of it is left; the current pool's stay, at most 1 MiB).

    The pool is anonymous MAP_PRIVATE memory mapped read-only; _core._pool_write makes the pages
    a copy spans writable for the copy only, so a stray write to the pool is a SIGSEGV, not a
    silent change of frozen data, and a forked worker that makes it writable changes its own
    copy. It has no descriptor: the memfd it once was kept a writable descriptor open, through
    which a worker forked from C (where no Python fork hook runs) could change what its parent
    and its siblings read.

    None when called from within itself (a signal handler or a finalizer that unpickles a view
    while this thread copies into the pool): the outer copy owns the pool until it returns."""
    global _filling
    with _pool_lock:
        if _filling:
            return None
        _filling = True
        try:
            return _fill_pool(data, len(data))
        finally:
            _filling = False


def _fill_pool(data, size):
    """_pooled's copy; _pool_lock held, _filling set."""
    global _pool
    if _pool is None or _pool[1] + size > len(_pool[0]):
        n = max(_POOL_BYTES, -(-size // _mmap.PAGESIZE) * _mmap.PAGESIZE)
        # The full pool's mapping stays while its views do.
        _pool = [_mmap.mmap(-1, n, flags=_mmap.MAP_PRIVATE, prot=_mmap.PROT_READ), 0]
    m, at = _pool
    _core._pool_write(m, at, data)
    _pool[1] = (at + size + 15) & ~15
    return memoryview(m)[at:at + size].toreadonly()


def _own_mapping(data):
    """A read-only memoryview of a copy of data in an anonymous mapping of its own, as the pool's
    (writable for the copy only, no descriptor), unmapped with its last view."""
    n = max(1, -(-len(data) // _mmap.PAGESIZE)) * _mmap.PAGESIZE
    m = _mmap.mmap(-1, n, flags=_mmap.MAP_PRIVATE, prot=_mmap.PROT_READ)
    _core._pool_write(m, 0, data)
    return memoryview(m)[:len(data)].toreadonly()


def _arena_for_big_value(store):
    """Whether the large graph unpickled by value in store keeps its arena (see _BIG_IN_ARENAS)."""
    with _big_lock:
        if len(_big_in_arenas) >= _BIG_IN_ARENAS:
            for key, ref in list(_big_in_arenas.items()):
                if not _live(ref()):  # closed: its slot is free, though the Store object lives on
                    _big_in_arenas.pop(key, None)
            if len(_big_in_arenas) >= _BIG_IN_ARENAS:
                return False
        key = id(store)
        held = _big_in_arenas  # the dict this store is counted in, when it goes
        held[key] = _weakref.ref(store, lambda _, key=key: held.pop(key, None))
        return True


def frozen_value(value):
    """Unpickling of a view sent by value: freeze(value), copied out of its arena (see
    _POOLED_UP_TO)."""
    from . import freeze
    frozen = freeze(value)
    store = _core._store_of(frozen)
    address, size = _core._range(frozen)
    import ctypes
    if size > _POOLED_UP_TO:
        if _arena_for_big_value(store):
            return frozen
        copied = _own_mapping((ctypes.c_ubyte * size).from_address(address))  # no bytes between
    else:
        copied = _pooled(ctypes.string_at(address, size))
        if copied is None:  # unpickled while this thread fills the pool: its own arena
            return frozen
    copy = _core._mapped_store(copied)
    del frozen
    _core._close(store)
    return _core._store_view(copy, 0)


# ----- sharing with other processes (multiprocessing) -------------------------------------------

class _SharedMapping(_mmap.mmap):
    """A read-only MAP_SHARED mapping of a memfd another process shared, plus a descriptor of it
    (this process may pass the graph on). Unmapped and closed when the store lets go of it."""

    def __new__(cls, fd, size):
        self = super().__new__(cls, fd, size, flags=_mmap.MAP_SHARED, prot=_mmap.PROT_READ)
        self.fd = _os.dup(fd)
        return self

    # os.close bound at class creation: a mapping still alive when the interpreter exits (a
    # spawned worker's, a Manager's) is freed after this module's globals were set to None.
    def __del__(self, _close=_os.close):
        fd, self.fd = self.fd, -1
        if fd >= 0:
            _close(fd)


class _Descriptor:
    """A descriptor this module opened (an image file, read-only), closed with the object."""

    def __init__(self, fd):
        self.fd = fd

    def __del__(self, _close=_os.close):  # as _SharedMapping's: may run after _os is None
        _close(self.fd)


# image store -> the file's identity when it was opened (device, inode, size, mtime)
_image_identity: "_weakref.WeakKeyDictionary[_core.Store, tuple[int, ...]]" = (
    _weakref.WeakKeyDictionary())
# image store -> _Descriptor of its file, opened for the first ForkingPickler send; None when
# the path no longer held that file then: a replaced file (save() renames a new one over it, as
# the Reloader's swap does) does not come back, and the path is not opened again for each of the
# store's views sent after (thousands, in one Pool.map).
_image_files: "_weakref.WeakKeyDictionary[_core.Store, _Descriptor | None]" = (
    _weakref.WeakKeyDictionary())
_UNSEEN = object()


def _image_descriptor(store, path):
    """A read-only descriptor of the file the image store maps, or None when its path no longer
    holds that file (the receiver then opens the path and checks the id)."""
    held = _image_files.get(store, _UNSEEN)
    if held is not _UNSEEN:
        return None if held is None else held.fd
    try:
        # O_NONBLOCK: a FIFO put at the path would block the send (the identity check refuses it).
        fd = _os.open(path, _os.O_RDONLY | _os.O_CLOEXEC | _os.O_NONBLOCK)
    except OSError:
        _image_files[store] = None
        return None
    held = _Descriptor(fd)
    st = _os.fstat(fd)
    if (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns) != _image_identity.get(store):
        _image_files[store] = None
        return None
    _image_files[store] = held
    return fd


def _memfd_descriptor(store):
    """A descriptor of a sealed memfd holding the store's graph; it stays the store's."""
    owner = _core._store_owner(store)
    if isinstance(owner, _SharedMapping):
        return owner.fd
    fd = _core._share(store)  # the arena's own memfd (an anonymous arena would be moved first)
    st = _os.fstat(fd)
    _shared[(st.st_dev, st.st_ino)] = store
    return fd


def _map_shared(fd, size):
    """The store of the graph in the sealed memfd fd (from another process), mapped once."""
    st = _os.fstat(fd)
    key = (st.st_dev, st.st_ino)
    store = _shared.get(key)
    if _live(store):
        return store
    try:
        seals = _fcntl.fcntl(fd, _fcntl.F_GET_SEALS)
    except OSError as e:
        raise ValueError(f"permafrost: the descriptor received is not a memfd ({e})") from None
    # Sealed against writes, growth and shrinking: nobody can change or truncate what this
    # process reads (no SIGBUS), and no mapping of it can ever be made writable.
    if seals & _SEALS != _SEALS:
        raise ValueError("permafrost: the memfd received is not sealed against writes "
                         "(not a frozen permafrost arena)")
    if not 0 < size <= st.st_size:
        raise ValueError(f"permafrost: the memfd received holds {st.st_size} bytes, "
                         f"not the {size} of the graph")
    store = _core._mapped_store(_SharedMapping(fd, size))
    _shared[key] = store
    global _received_pid
    _received_pid = _os.getpid()  # views of it may leave by reference: see _hand_over_before_exit
    return store


def _map_image(fd, path, image_id):
    """The store of the image file fd (from another process, which checked it), mapped once."""
    st = _os.fstat(fd)
    key = (st.st_dev, st.st_ino)
    store = _shared.get(key)
    if _live(store) and _core._store_id(store) == image_id:
        return store
    store = _core._open_store_fd(fd, path)
    if _core._store_id(store) != image_id:
        raise ValueError(f"{path}: the file received is not the image the view was made from")
    _shared[key] = store
    _images_by_id[(path, image_id)] = store
    _image_identity[store] = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    return store


def _attach(dup_fd, size, key=None):
    """Unpickling of an arena's store sent by ForkingPickler: multiprocessing hands over the
    memfd. key: the memfd's (device, inode), for a sender that may have exited meanwhile."""
    try:
        fd = dup_fd.detach()
    except (OSError, EOFError) as e:
        # The sender is gone with the descriptor (a worker sent back a view of a graph it had
        # received, then exited): this process still maps the graph if it sent it.
        store = _shared.get(key) if key is not None else None
        if _live(store):
            return store
        raise _sender_gone(e) from e
    try:
        return _map_shared(fd, size)
    finally:
        _os.close(fd)


def _sender_gone(error):
    """error (raised taking a descriptor from the sender's resource sharer) of the same type,
    saying what happened: a bare EOFError or ConnectionRefusedError, after the sender's wait at
    its exit (_hand_over_before_exit), did not say that the view was lost, nor why."""
    what = ("permafrost: the view cannot be received: the process that sent it exited first, "
            "with the only descriptor of its graph (a process multiprocessing started waits "
            f"{_HAND_OVER_SECONDS:g} s at its exit for its views to be taken: read its Queue "
            f"before join()ing it); {type(error).__name__}: {error}")
    try:
        if isinstance(error, OSError) and error.errno is not None:
            return type(error)(error.errno, what)
        return type(error)(what)
    except Exception:  # a type that takes other arguments
        return EOFError(what)


def _attach_image(dup_fd, path, image_id):
    """Unpickling of an image's store sent by ForkingPickler: the sender's descriptor of the
    file, so the receiver neither depends on the path nor checks the file again."""
    fd = dup_fd.detach()
    try:
        return _map_image(fd, path, image_id)
    finally:
        _os.close(fd)


# How long a process that multiprocessing started waits at its exit for the receivers of the
# descriptors it sent to take them (see _hand_over_before_exit).
_HAND_OVER_SECONDS = 30.0
_hand_over_pid = None  # the process that registered _hand_over_before_exit
_received_pid = None  # the process that mapped a graph another process shared (_map_shared)


def _hand_over_before_exit():
    """At the exit of a process that multiprocessing started and that mapped a graph it received
    or sent a large one of its own: views of it went by reference (see reduce_for_process), the
    descriptor held by this
    process's resource sharer until the receiver unpickles, which may be after this process
    returned (a Process that put the view on a Queue, a Pool worker with maxtasksperchild). The
    graph's sender may no longer map it by then (it dropped its last view once it was sent), so
    nobody could supply it: ConnectionRefusedError, and a Pool's result thread died of it and
    pool.map() hung. Wait until Queue feeder threads have sent their messages and the receivers
    have taken every descriptor; bounded, and over when the parent is gone.

    exitpriority 1: after Queues are told to close (10), before the resource sharer's socket is
    unlinked (0)."""
    import threading
    from multiprocessing import resource_sharer
    sharer = getattr(resource_sharer, "_resource_sharer", None)
    pending = getattr(sharer, "_cache", None)
    parent = _mp.parent_process()
    if parent is None or _in_dataloader_worker():
        return
    deadline = _time.monotonic() + _HAND_OVER_SECONDS
    while _time.monotonic() < deadline:
        feeding = any(t.name == "QueueFeederThread" and t.is_alive()
                      for t in threading.enumerate())
        # The feeder pickles a message (and may set _received_pid) only now: checked after it.
        # _received_pid is also set when forked from a process that mapped a graph: it has them.
        if not feeding and (_received_pid is None or not pending):
            if _received_pid is not None and pending is not None:
                # The sharer's thread takes a descriptor out of its cache before it sends it:
                # an exit now could end that thread mid-send, and the receiver got EOFError (seen
                # under load). stop() is served after the connection in hand, then joined.
                sharer.stop(max(deadline - _time.monotonic(), 1.0))
            return
        try:
            if _mp_connection.wait([parent.sentinel], timeout=0.01):
                return  # the parent exited: nobody will read
        except (OSError, TypeError, ValueError):  # no sentinel to watch
            _time.sleep(0.01)


def _in_dataloader_worker():
    """Whether this is a PyTorch DataLoader worker: one exits when its DataLoader is done with it
    (the epoch ended, or the loop left it early) and drops what it has not sent
    (cancel_join_thread): the batches it sent and the parent dropped unread are never taken, and
    the wait stalled every early exit (break, an exception) until torch killed the worker 5 s
    later. Read from the module torch's workers set it in, without importing torch."""
    worker = _sys.modules.get("torch.utils.data._utils.worker")
    return getattr(worker, "_worker_info", None) is not None


def _wait_at_exit_for_receivers(after_fork=None):
    """Registers _hand_over_before_exit (once per process, and again after a started process
    cleared its finalizers; it does nothing in a process that multiprocessing did not start)."""
    global _hand_over_pid
    if after_fork is not None or _hand_over_pid != _os.getpid():
        _hand_over_pid = _os.getpid()
        _mp_util.Finalize(None, _hand_over_before_exit, exitpriority=1)


class _AfterFork:
    pass


# A forked (fork, forkserver) process clears the finalizers it inherited, then runs the after-fork
# hooks; a spawned one imported this module itself (to unpickle its Process's arguments or later).
_after_fork = _AfterFork()
_mp_util.register_after_fork(_after_fork, _wait_at_exit_for_receivers)
_wait_at_exit_for_receivers()


def _reduce_store(store):
    kind, path, image_id, size = _core._store_info(store)
    if kind == "image":
        fd = _image_descriptor(store, path)
        if fd is None:  # the path holds another file now: the receiver finds it by its id
            return (image_store, (path, image_id))
        return (_attach_image, (_reduction.DupFd(fd), path, image_id))
    fd = _memfd_descriptor(store)
    st = _os.fstat(fd)
    return (_attach, (_reduction.DupFd(fd), size, (st.st_dev, st.st_ino)))


def store_value(store, offset):
    """Unpickling of a view sent by ForkingPickler."""
    return _core._store_view(store, offset)


def _sender_may_exit_first():
    """True when a descriptor sent now would wait in this process's resource sharer for the
    receiver to take it, and this process is one multiprocessing started (a Process, a Pool or
    ProcessPoolExecutor worker), which may exit before its message is read: a Process that puts
    its result on a Queue and returns, a worker with maxtasksperchild. The receiver then got
    EOFError or ConnectionRefusedError instead of the view, and a Pool whose result thread died
    of it hung."""
    return _mp.parent_process() is not None and _mp_context.get_spawning_popen() is None


# A process that may exit first sends a graph of its own smaller than this by value (it fits a
# pipe's buffer: the message is written even when the receiver reads only after joining it).
_BY_VALUE_BELOW = 64 << 10


def reduce_for_process(view):
    """ForkingPickler's reduction of a view: its store and offset, never a copy. The store is one
    object per pickle (pickle's memo), so many views of one graph in one message pass one
    descriptor.

    Except from a process that may exit before the receiver takes the descriptor: there a view
    of an image goes as plain pickle sends it ((path, offset, image id): no descriptor), and a
    view of a graph made in this process by value. A view of a graph this process received
    still goes by reference, and its sender, who maps it, finds it without the descriptor."""
    store = _core._store_of(view)  # ValueError when closed
    kind, path, _, size = _core._store_info(store)
    if kind == "mapped" and not isinstance(_core._store_owner(store), _SharedMapping):
        return view.__reduce__()  # unpickled by value into the pool or a mapping: by value again
    if kind == "image" and _image_descriptor(store, path) is None:
        # A newer image was saved at the path since this one was opened (the Reloader's swap),
        # and this process holds no descriptor of the file it maps: a receiver that does not map
        # it already cannot find it (ValueError when unpickling; a Pool worker died of it and the
        # Pool hung). By value, as plain pickle sends a freeze() result: a small one into the
        # receiver's pool, not an arena of its own (each of 2000 sub-views sent in one message
        # took an arena slot, the worker died when all 1024 were taken, and the Pool hung).
        return (frozen_value, (view.thaw(),))
    if _sender_may_exit_first() and not isinstance(_core._store_owner(store), _SharedMapping):
        if kind == "image":
            # (path, offset, image id), no descriptor (it would make every receiver fetch it
            # from this process, a round trip per message, and this process wait at its exit).
            return (received_image_value, view._ref())
        if size < _BY_VALUE_BELOW:
            return view.__reduce__()
        # A large graph of its own: by value is a copy the size of the thawed graph in both
        # processes (a 300,000-row table took 8 s and doubled the receiver's memory), and no
        # smaller a risk (a message larger than the pipe's buffer waits for its reader as well).
        # By reference, and this process waits at its exit for the receiver to take it.
        global _received_pid
        _received_pid = _os.getpid()
    return (store_value, (store, view._ref()[1]))


def register_reducers(view_types):
    for cls in view_types:
        _reduction.ForkingPickler.register(cls, reduce_for_process)
    _reduction.ForkingPickler.register(_core.Store, _reduce_store)
