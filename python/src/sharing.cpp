// permafrost for Python — sending a Store to another process (see sharing.hpp).
#include "sharing.hpp"

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>

#include <sys/mman.h>
#include <unistd.h>

#include "format.hpp"
#include "permafrost/arena.hpp"
#include "reading.hpp"
#include "store.hpp"

namespace permafrost::python {

// _share(store) -> the descriptor of a sealed memfd holding the store's graph (the store keeps
// it). freeze() and the builders write into memfd arenas (graph_output.hpp), whose descriptor
// is returned as it is. An anonymous arena store would be moved into a memfd arena the first
// time: a copy, pre-faulted so that this process maps every page (a receiver's pages are then
// shared with it, not its own), after which its views read the copy and the old arena goes
// (once no reader is in flight).
PyObject* py_share(PyObject* module, PyObject* o) {
  PF_ENTRY_BEGIN
  store_object* s = store_of(state_of(module), o);
  if (!s->owner.arena) {
    PyErr_SetString(PyExc_ValueError,
                    "permafrost: only a freeze() result is shared through a memfd");
    return nullptr;
  }
  // fd() checks the descriptor is still the arena's own (fstat): asked once.
  int fd = s->owner.arena->fd();
  if (fd < 0) {
    const reading r(s);
    std::unique_ptr<permafrost::arena> a =
        frozen_copy(r.base, s->size, std::string(s->owner.arena->name()), /*memfd=*/true);
    a->populate();
    s->base = reinterpret_cast<const char*>(a->used_bytes().data());
    store_owner next;
    next.arena = a.release();
    replace_owner(s, next);
    fd = s->owner.arena->fd();
  }
  return PyLong_FromLong(fd);
  PF_ENTRY_END
}

// _mapped_store(owner) -> a Store over the read-only buffer `owner` exports: a graph another
// process shared (a memfd this process mapped). The Store keeps owner, and the buffer, until it
// is closed or dies.
PyObject* py_mapped_store(PyObject* module, PyObject* owner) {
  PF_ENTRY_BEGIN
  ref store = new_store(state_of(module));
  auto* s = reinterpret_cast<store_object*>(store.get());
  if (PyObject_GetBuffer(owner, &s->owner.buffer, PyBUF_SIMPLE) < 0) return nullptr;
  Py_INCREF(owner);
  s->owner.mapped = owner;
  if (static_cast<std::size_t>(s->owner.buffer.len) < sizeof(root_header) ||
      reinterpret_cast<std::uintptr_t>(s->owner.buffer.buf) % 16 != 0) {
    PyErr_SetString(PyExc_ValueError, "permafrost: not a frozen graph (too small or unaligned)");
    return nullptr;
  }
  s->base = static_cast<const char*>(s->owner.buffer.buf);
  s->size = static_cast<std::size_t>(s->owner.buffer.len);
  return store.release();
  PF_ENTRY_END
}

// _pool_write(mapping, offset, data): copies data into the read-only anonymous mapping at offset
// (a pool of small graphs unpickled by value, _stores.py): the pages it spans are writable for
// the copy only. The pool was a memfd written with pwrite(), and its writable descriptor stayed
// open in the process: a worker forked from C (uWSGI's, where no Python fork hook runs) inherited
// it and could change what the parent and its siblings read. Anonymous MAP_PRIVATE memory has no
// descriptor: a worker that writes to it writes its own copy.
PyObject* py_pool_write(PyObject*, PyObject* args) {
  PyObject* mapping = nullptr;
  Py_ssize_t at = 0;
  Py_buffer data{};
  if (!PyArg_ParseTuple(args, "Ony*", &mapping, &at, &data)) return nullptr;
  struct held {
    Py_buffer* b;
    ~held() {
      if (b->obj) PyBuffer_Release(b);
    }
  } data_held{&data};
  Py_buffer m{};
  if (PyObject_GetBuffer(mapping, &m, PyBUF_SIMPLE) < 0) return nullptr;
  const held mapping_held{&m};
  const auto page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  auto* base = static_cast<char*>(m.buf);
  if (reinterpret_cast<std::uintptr_t>(base) % page != 0 ||
      static_cast<std::size_t>(m.len) % page || at < 0 || data.len > m.len - at) {
    PyErr_SetString(PyExc_ValueError, "_pool_write: not a whole mapping, or data outside it");
    return nullptr;
  }
  if (data.len == 0) Py_RETURN_NONE;
  const auto first = reinterpret_cast<std::uintptr_t>(base + at) / page * page;
  const auto end =
      (reinterpret_cast<std::uintptr_t>(base + at + data.len) + page - 1) / page * page;
  // mprotect directly: the extension uses only the library's public API (scripts/check-layers),
  // which has no call for this, as any program may call the system.
  auto* p = reinterpret_cast<void*>(first);
  if (::mprotect(p, end - first, PROT_READ | PROT_WRITE) != 0)
    return PyErr_SetFromErrno(PyExc_OSError);
  std::memcpy(base + at, data.buf, static_cast<std::size_t>(data.len));
  if (::mprotect(p, end - first, PROT_READ) != 0) return PyErr_SetFromErrno(PyExc_OSError);
  Py_RETURN_NONE;
}

// _store_owner(store) -> the object a mapped store keeps (see _mapped_store), else None.
PyObject* py_store_owner(PyObject* module, PyObject* o) {
  store_object* s = as_store(state_of(module), o);
  if (!s) return nullptr;
  PyObject* r = s->owner.mapped ? s->owner.mapped : Py_None;
  Py_INCREF(r);
  return r;
}

// _store_info(store) -> (kind, path, image id, size): kind "arena", "image", "mapped" (a graph
// another process shared) or "closed"; path and image id are None except for images.
PyObject* py_store_info(PyObject* module, PyObject* o) {
  store_object* s = as_store(state_of(module), o);
  if (!s) return nullptr;
  const char* kind = !s->base          ? "closed"
                     : s->owner.image  ? "image"
                     : s->owner.mapped ? "mapped"
                                       : "arena";
  return Py_BuildValue("(sOOn)", kind, s->path, s->image_id, static_cast<Py_ssize_t>(s->size));
}

}  // namespace permafrost::python
