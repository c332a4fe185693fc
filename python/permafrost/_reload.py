"""Reloader: the image at a path, mapped anew when a newer one is saved there (servers)."""
import os as _os
import sys as _sys
import threading as _threading
import time as _time
import traceback as _traceback

from . import _core, _stores

_RETRY_AFTER = 2.0  # seconds: longer than a coarse file-system timestamp's tick
_REOPEN_WAIT = 30.0  # seconds a thread waits for another's reopen of a closed image


def _detached(error, handling):
    """error (and each exception it chains to) without its traceback, whose lines are kept in a
    note: `traceback.print_exception(reloader.error)` still shows where the open failed.

    A traceback holds its frames, and each frame its caller's (f_back), up to the request that
    called current(): .error kept this check's frame, whose `self` holds .error, so that cycle
    kept every one of those frames and their locals (whatever the request and the failed open
    had made) alive until the garbage collector ran. frame.clear() drops a frame's locals but
    not its f_back. The exception the caller was handling when the open failed (`handling`,
    error's implicit context) is the caller's, not the failure's: it is not kept."""
    chain, seen, todo = [], set(), [error]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        chain.append(e)
        if e.__context__ is handling:
            e.__context__ = None
        if e.__cause__ is handling:
            e.__cause__ = None
        todo += (e.__cause__, e.__context__)
    error.__traceback__ = error.__traceback__.tb_next  # without this check's own frame
    for e in chain:
        lines = _traceback.format_tb(e.__traceback__)
        e.__traceback__ = None
        if lines:
            e.add_note("Traceback (its frames are not kept):\n" + "".join(lines).rstrip("\n"))
    return error


def _default_open():
    from . import open as _open  # not at import: permafrost imports this module
    return _open


def _closed(root):
    # A view's closed; an opener's own kind of root (or a scalar root) is never closed.
    return getattr(root, "closed", False) is True


class Reloader:
    """The current image at path, reopened when a newer one is saved there.

        tables = permafrost.Reloader("/srv/routes.pfi")   # in the master, before fork
        def handle(request):
            routes = tables.current()    # once per request: its lookups all see one image
            ...

    current() returns the root view of the image at path. At most once every `interval` seconds
    (0: on every call) it compares the path's identity (device, inode, size, mtime: one stat) with
    that of the image it holds, and when a new file was saved there (save() writes a temporary
    file and renames it over the path) it maps the new one. Requests still holding views of the
    old image keep reading it; it is unmapped when the last of them is gone. After fork, every
    worker reloads on its own next request.

    A new file that cannot be opened (not an image, damaged, not yet complete because it was
    written in place, not readable) leaves the current image in place, so no request fails: the
    exception is in .error (without its frames: the lines of its traceback are in a note, which
    traceback.print_exception() shows) and the file is tried again when its identity changes
    (its ctime too: a chmod that makes it readable), and once more at least 2 seconds later
    even if it seems unchanged (a file completed in place within one tick of a coarse
    file-system clock, a second on some, keeps its size and mtime). A path that names no file
    (deleted, or not yet renamed into place) leaves the current image in place too, with the
    OSError of the path (FileNotFoundError) in .error until a file is there. With no image at
    all yet (the first open fails), the constructor raises. An image in service that was closed
    (close() of any view of it, or `with permafrost.open(path) as root:` elsewhere in the
    process: the same file's views share one mapping) is opened again at the next current(),
    from its file, which the Reloader holds open, where the path no longer holds it.

    Thread safety: current() may be called from any number of threads; one of them reopens.

    Pickling (a spawn or forkserver worker's argument, a DataLoader's dataset): the copy holds
    the same image, sent as a view is (a reference, through the file the Reloader holds open
    also where the path has a newer image since; opened again first if it was closed), checks
    the path at its first current() and reloads on its own; .error is not sent.
    A custom opener must be picklable (a module-level function).
    """

    def __init__(self, path, *, interval=1.0, opener=None):
        from . import open as _open  # not at import: permafrost imports this module
        self.path = _stores.absolute_path(path)  # str, as open() keeps it
        self.interval = float(interval)
        if not self.interval >= 0:  # NaN compares false with every clock: it never reloaded
            raise ValueError(f"interval must be a number of seconds >= 0, not {interval!r}")
        self.error = None  # the exception of the last failed reopen, None after a success
        self._error_is_the_path = False  # .error is the path's stat() error
        self._open = opener or _open
        self._lock = _threading.RLock()
        self._lock_pid = _os.getpid()
        self._identity = None
        self._identity = self._stat()
        self._root = self._open(self.path)
        self.error, self._error_is_the_path = None, False  # the stat may have raced a save
        # The file of the image in service, held open (permafrost.open()'s images only), so that
        # one closed under the Reloader comes back even where the path no longer holds it.
        self._file = None
        if self._open is _default_open():
            self._hold_file(self._identity)
        self._checked = _time.monotonic()
        self._failed_identity = None
        self._failed_at = None  # monotonic time of that failure; None once it was tried again

    def _stat(self):
        try:
            st = _os.stat(self.path)
        except OSError as e:
            # No file at the path (deleted, or a deploy that unlinks before it writes): the
            # image in service stays, and .error says so (it stayed None: nothing told an
            # operator). Not for a path that named no file when the image in service opened
            # (a custom opener's own kind of name). A new exception: e's traceback would hold
            # this frame, and self; the one of the last check while it is the same error, so
            # that code that logs a new .error logs it once.
            last = self.error if self._error_is_the_path else None
            if self._identity is not None and (last is None or last.errno != e.errno):
                self.error = type(e)(e.errno, e.strerror, self.path)
                self._error_is_the_path = True
            return None
        if self._error_is_the_path:  # the path names a file again
            self.error, self._error_is_the_path = None, False
        return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)

    def current(self):
        """The root view of the newest image that opened; see the class docstring."""
        now = _time.monotonic()
        if now - self._checked >= self.interval or _closed(self._root):
            self._check(now)
        return self._root

    def _hold_file(self, identity):
        """Holds the file at path open when it is still the one of `identity` (just opened) and
        the one the image in service maps. It is also the image's descriptor for multiprocessing
        from then on: a Reloader (or a view) first sent to workers after a newer image was saved
        at the path went by value, a thawed copy in every worker (the path no longer held it)."""
        from ._stores import _Descriptor, _image_files, _image_identity
        self._file = None
        try:
            # O_NONBLOCK: the path may have become a FIFO since the open, which would block.
            fd = _os.open(self.path, _os.O_RDONLY | _os.O_CLOEXEC | _os.O_NONBLOCK)
        except OSError:
            return
        held = _Descriptor(fd)
        st = _os.fstat(fd)
        opened = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        if identity and opened == identity[:4]:
            self._file = held
            try:
                store = _core._store_of(self._root)
            except (TypeError, ValueError):  # a root that is no view (a scalar), or closed
                return
            if _image_files.get(store) is None and _image_identity.get(store) == opened:
                _image_files[store] = held

    def _reopen_held(self):
        """Maps the image in service again from its held file, if it was closed (the path holds
        no image that opens: nothing, or a file that failed)."""
        if self._file is None or not _closed(self._root):
            return
        try:
            self._root = _core._store_view(_core._open_store_fd(self._file.fd, self.path), 0)
        except Exception:  # noqa: BLE001 - the closed view stays; the next check tries again
            pass

    def _check(self, now):
        if self._lock_pid != _os.getpid():
            # Forked while another thread of the parent held the lock: the child's copy stays
            # held for ever, and this worker would never reload. A fresh one per process.
            self._lock, self._lock_pid = _threading.RLock(), _os.getpid()
        # The lock acquired is the one released: two threads of a new child may each replace it
        # above, and releasing self._lock then released the other's (RuntimeError in its check).
        lock = self._lock
        # Reentrant: a signal handler, finalizer or trace hook that calls current() in the
        # checking thread itself checks (and may reopen) in turn, where a plain lock made it
        # wait for itself for ever.
        if not lock.acquire(blocking=False):
            # Another thread is checking: serve the current image meanwhile, unless it was
            # closed, which every read refuses: then wait for that thread's reopen (threads
            # returned the closed root, and their requests raised ValueError), for a while: an
            # opener that itself waits for a request thread must not hang both.
            if _closed(self._root) and lock.acquire(timeout=_REOPEN_WAIT):
                lock.release()
            return
        try:
            self._checked = now
            identity = self._stat()
            # The image in service is the same file while (device, inode, size, mtime) are: a
            # chmod or a hard link of it changes only its ctime, not worth a reopen. Unless it
            # was closed: opening a path maps nothing new while the image is open, so code that
            # ran `with permafrost.open(path) as root:` closed the one in service (every request
            # then raised ValueError until a new file was saved); it is opened again.
            if identity is None:
                self._reopen_held()
                return
            if self._identity and identity[:4] == self._identity[:4] and not _closed(self._root):
                return
            retry = identity == self._failed_identity
            if retry:
                # Tried once more, 2 s after it failed: the failed attempt may have read a file
                # still being written in place, in the same clock tick as its last write.
                if self._failed_at is None or now - self._failed_at < _RETRY_AFTER:
                    self._reopen_held()
                    return
            handling = _sys.exc_info()[1]  # the caller's, which e may chain to
            try:
                root = self._open(self.path)
            except Exception as e:  # keep serving the image that works
                self.error, self._error_is_the_path = _detached(e, handling), False
                self._failed_identity = identity
                self._failed_at = None if retry else now
                self._reopen_held()
                return
            self._root, self._identity = root, identity
            if self._open is _default_open():
                self._hold_file(identity)
            self.error = None
            self._failed_identity = None
        finally:
            lock.release()

    def __getstate__(self):
        # The lock cannot be pickled (it failed: "cannot pickle '_thread.lock' object"), and an
        # exception of the opener's may not be; the receiver makes a fresh lock. An image in
        # service that was closed under it is opened again first, as current() would: the
        # closed view could not be pickled (ValueError until current() had run once).
        if _closed(self._root):
            self.current()
        state = self.__dict__.copy()
        del state["_lock"], state["_lock_pid"]
        state["error"] = None
        state["_file"] = None  # a descriptor of this process; the receiver maps the view sent
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock, self._lock_pid = _threading.RLock(), _os.getpid()
        # The sender's monotonic clock is not this process's (another host, a reboot, a time
        # namespace): behind it, now - _checked stayed negative and the copy never reloaded.
        # It checks at its first current(), and tries a file that failed there once itself.
        self._checked = float("-inf")
        self._error_is_the_path = False  # .error is not sent
        self._failed_identity = None
        self._failed_at = None

    def __repr__(self):
        return f"permafrost.Reloader({self.path!r}, interval={self.interval})"
