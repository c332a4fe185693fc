// permafrost for Python — datetime, date, time, timedelta, Decimal, UUID and Enum members:
// Python objects to frozen payloads and back (the layout is scalar_format.hpp's).
//
// Contract: encode_scalar() recognises the values freeze() stores besides JSON's kinds and
// containers: datetime.datetime, date, time and timedelta (subclasses as their base class),
// decimal.Decimal, uuid.UUID (subclasses as the base) and enum.Enum members, which are frozen as
// their value (an IntEnum or StrEnum member is an int or a str already: freeze() stores it so
// before asking here). It reads what it needs through the base classes' own C-level accessors;
// the one user code it may run is an aware value's tzinfo.utcoffset() (a tzinfo written in
// Python). Decimal, UUID and Enum are recognised only once their module was imported (an
// instance cannot exist before), so freeze() imports nothing for them.
// scalar_from_node() builds the Python object of a scalar node back (an aware value with
// datetime.timezone(offset)); it imports decimal or uuid on first use.
//
// Thread safety: under the GIL.
#pragma once

#include <cstdint>
#include <string>

#include "py_ref.hpp"
#include "scalar_format.hpp"

namespace permafrost::python {

struct scalar_encoding {
  std::uint8_t kind = 0;   // a scalar kind (is_scalar_kind), or 0 when `replacement` is set
  std::uint8_t flags = 0;  // the node's flags (flag_aware)
  std::string payload;     // the node's payload bytes
  ref replacement;         // an Enum member's value: freeze (or encode) this instead
};

// Effects: fills `out` when o is one of the kinds above and returns true; returns false, with
// `out` untouched and no exception, for anything else.
// Throws: py_error (exception set) when reading o fails (a tzinfo.utcoffset() that raises or
// returns a bad value).
bool encode_scalar(PyObject* o, scalar_encoding& out);

// Effects: the `_value_` of o when o is an Enum member (a new reference), else a null ref; only
// the Enum test of encode_scalar, for following a member valued by a member.
// Throws: py_error (set) when reading the value raises.
ref enum_member_value(PyObject* o);

// Effects: appends the JSON text of e (filled by encode_scalar, without a replacement) to out, as
// append_scalar_json() writes the frozen node.
void append_encoded_json(const scalar_encoding& e, std::string& out);

// The Python object of scalar node n (is_scalar_kind; checked by scalar_node_error or built by
// freeze()): a new reference, or NULL with an exception set.
PyObject* scalar_from_node(const node_header* n);

}  // namespace permafrost::python
