// permafrost for Python — key hashing and lookup in frozen tables.
//
// Contract: key_hash() is the one hash of every key stored in a frozen table (dict keys, set
// elements): seedless, so an index built in one process is valid in every other, whatever
// PYTHONHASHSEED says; equal keys hash equal (1 == 1.0 == True, a tuple and its frozen copy);
// the hash of a str is permafrost::detail::hash_bytes over its UTF-8 bytes. It runs no user code
// (a subclass's __hash__ or __iter__ is never called). table_find() looks a Python key up in a
// frozen table: str keys by bytes (no object made), other keys by hash, then == against the
// materialised candidate (user code may run there).
//
// Thread safety: under the GIL.
#pragma once

#include <cstdint>
#include <string_view>

#include "format.hpp"
#include "module_state.hpp"
#include "py_ref.hpp"

namespace permafrost::python {

struct store_object;

// Keys nest (tuples of tuples) at most this deep; deeper ones are refused, not recursed into.
inline constexpr std::size_t max_key_depth = 5000;

// A str's UTF-8 bytes without copying when CPython already has them (ASCII, or a cached UTF-8
// form); lone surrogates are encoded with surrogatepass into `holder` (set only then). Returns
// false with an exception set on failure.
bool utf8_of(PyObject* s, std::string_view& out, ref& holder);

// What a key hash is for: storing a key (freeze: only the types the format holds), or looking
// one up (any hashable key, as a dict takes it).
enum class key_use { store, lookup };

// The seedless hash of a hashable supported value into h. Returns false with TypeError set for
// an unsupported or unhashable value (or one nested deeper than max_key_depth).
// With key_use::lookup, a hashable value of any other type (a date, an Enum, a Fraction, a
// plain object; inside a tuple or frozenset too) hashes as its own hash() mixed the same way:
// numbers that equal a stored int or float (Fraction(1), Decimal("1.5")) share CPython's
// seedless numeric hash and so find it; anything else probes and is found absent (a stored key
// is never ==, unless its __eq__ says so). An unhashable value raises TypeError as a dict does.
bool key_hash(const module_state& state, PyObject* o, std::uint64_t& h, std::size_t depth = 0,
              key_use use = key_use::store);

// The key freeze() stores for the key o: o itself, or where o is or holds (in tuples, at any
// depth) a FrozenSet view of a set, a copy with each such view replaced by the frozenset of its
// elements. The view equals and hashes as that frozenset, and is hashable where a set is not;
// stored as the set it views, the key would thaw unhashable. Runs no user code (the frozenset's
// elements are thawed, builtin objects); a frozenset key is left as it is (a new one would hash
// its elements: user code), and key_hash refuses a view of a set in it.
// A new reference, or nullptr with an exception set (a closed view: ValueError).
PyObject* storable_key(const module_state& state, PyObject* o, std::size_t depth = 0);

// The entry index of `key` in table `t` of `store` (bytes at base), entry_absent when it is not
// there (a hashable key of a type freeze() does not store included), entry_failed with an
// exception set (an unhashable key: TypeError, as for a dict).
std::int64_t table_find(store_object* store, const char* base, const table_header* t,
                        PyObject* key);

}  // namespace permafrost::python
