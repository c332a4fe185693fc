// permafrost for Python — datetime, date, time, timedelta, Decimal, UUID, Enum (see scalars.hpp).
#include "scalars.hpp"

#include <datetime.h>

#include <cstring>
#include <new>
#include <vector>

namespace permafrost::python {
namespace {

constexpr std::int64_t us_per_second = 1000000;

// datetime's C API, imported on first use in each interpreter: the capsule is the datetime
// module's, so one a subinterpreter imported went with it, and the main interpreter then read a
// date through a freed table (SIGSEGV) and refused dates. Cached with the interpreter's id,
// which is never reused (its address is). All interpreters share the GIL here (the module does
// not support a GIL of its own), which guards both statics.
const PyDateTime_CAPI* datetime_api() {
  static std::int64_t imported_for = -1;
  const std::int64_t id = PyInterpreterState_GetID(PyInterpreterState_Get());
  if (!PyDateTimeAPI || imported_for != id) {
    PyDateTimeAPI = nullptr;
    PyDateTime_IMPORT;  // the macros (PyDateTime_Check...) read PyDateTimeAPI
    if (!PyDateTimeAPI) throw py_error{};
    imported_for = id;
  }
  return PyDateTimeAPI;
}

// `module.name`: imported when `import`; otherwise only when the module was imported already, else
// an empty ref (no exception): no instance of a class of a module never imported can exist.
ref imported_class(const char* module, const char* name, bool import) {
  ref mod_name(check(PyUnicode_FromString(module)));
  ref m(import ? PyImport_Import(mod_name.get()) : PyImport_GetModule(mod_name.get()));
  if (!m.get()) {
    if (PyErr_Occurred()) throw py_error{};
    return ref();
  }
  ref cls(check(PyObject_GetAttrString(m.get(), name)));
  if (!PyType_Check(cls.get())) {
    PyErr_Format(PyExc_TypeError, "%s.%s is not a class", module, name);
    throw py_error{};
  }
  return cls;
}

template <class T>
void put(scalar_encoding& out, std::uint8_t kind, const T& payload) {
  out.kind = kind;
  out.payload.assign(reinterpret_cast<const char*>(&payload), sizeof payload);
}

// The UTC offset of an aware datetime or time in microseconds (through the base class's
// utcoffset(), which calls the tzinfo's and checks its answer), or false when it is naive.
bool utc_offset(PyObject* base_class, PyObject* o, std::int64_t& us) {
  ref off(check(PyObject_CallMethod(base_class, "utcoffset", "O", o)));
  if (off.get() == Py_None) return false;
  const std::int64_t days = PyDateTime_DELTA_GET_DAYS(off.get());
  const std::int64_t secs = PyDateTime_DELTA_GET_SECONDS(off.get());
  us = (days * 86400 + secs) * us_per_second + PyDateTime_DELTA_GET_MICROSECONDS(off.get());
  return true;
}

bool encode_datetime(const PyDateTime_CAPI* api, PyObject* o, scalar_encoding& out) {
  if (PyDateTime_Check(o)) {  // before date: a datetime is a date
    frozen_datetime v{};
    v.year = static_cast<std::uint16_t>(PyDateTime_GET_YEAR(o));
    v.month = static_cast<std::uint8_t>(PyDateTime_GET_MONTH(o));
    v.day = static_cast<std::uint8_t>(PyDateTime_GET_DAY(o));
    v.hour = static_cast<std::uint8_t>(PyDateTime_DATE_GET_HOUR(o));
    v.minute = static_cast<std::uint8_t>(PyDateTime_DATE_GET_MINUTE(o));
    v.second = static_cast<std::uint8_t>(PyDateTime_DATE_GET_SECOND(o));
    v.fold = static_cast<std::uint8_t>(PyDateTime_DATE_GET_FOLD(o));
    v.microsecond = static_cast<std::uint32_t>(PyDateTime_DATE_GET_MICROSECOND(o));
    if (PyDateTime_DATE_GET_TZINFO(o) != Py_None &&
        utc_offset(reinterpret_cast<PyObject*>(api->DateTimeType), o, v.utc_offset_us))
      out.flags = flag_aware;
    put(out, kind_datetime, v);
    return true;
  }
  if (PyDate_Check(o)) {
    const frozen_date v{static_cast<std::uint16_t>(PyDateTime_GET_YEAR(o)),
                        static_cast<std::uint8_t>(PyDateTime_GET_MONTH(o)),
                        static_cast<std::uint8_t>(PyDateTime_GET_DAY(o))};
    put(out, kind_date, v);
    return true;
  }
  if (PyTime_Check(o)) {
    frozen_time v{};
    v.hour = static_cast<std::uint8_t>(PyDateTime_TIME_GET_HOUR(o));
    v.minute = static_cast<std::uint8_t>(PyDateTime_TIME_GET_MINUTE(o));
    v.second = static_cast<std::uint8_t>(PyDateTime_TIME_GET_SECOND(o));
    v.fold = static_cast<std::uint8_t>(PyDateTime_TIME_GET_FOLD(o));
    v.microsecond = static_cast<std::uint32_t>(PyDateTime_TIME_GET_MICROSECOND(o));
    if (PyDateTime_TIME_GET_TZINFO(o) != Py_None &&
        utc_offset(reinterpret_cast<PyObject*>(api->TimeType), o, v.utc_offset_us))
      out.flags = flag_aware;
    put(out, kind_time, v);
    return true;
  }
  if (PyDelta_Check(o)) {
    const frozen_timedelta v{PyDateTime_DELTA_GET_DAYS(o), PyDateTime_DELTA_GET_SECONDS(o),
                             PyDateTime_DELTA_GET_MICROSECONDS(o), 0};
    put(out, kind_timedelta, v);
    return true;
  }
  return false;
}

bool encode_decimal(PyObject* o, scalar_encoding& out) {
  ref cls = imported_class("decimal", "Decimal", false);
  if (!cls.get() || !PyObject_TypeCheck(o, reinterpret_cast<PyTypeObject*>(cls.get())))
    return false;
  // Decimal's own str (a subclass's __str__ does not run): the exact value, sign and exponent.
  ref text(check(reinterpret_cast<PyTypeObject*>(cls.get())->tp_str(o)));
  Py_ssize_t n = 0;
  const char* t = PyUnicode_AsUTF8AndSize(text.get(), &n);
  if (!t) throw py_error{};
  out.kind = kind_decimal;
  out.payload.assign(t, static_cast<std::size_t>(n));
  return true;
}

bool encode_uuid(PyObject* o, scalar_encoding& out) {
  ref cls = imported_class("uuid", "UUID", false);
  if (!cls.get() || !PyObject_TypeCheck(o, reinterpret_cast<PyTypeObject*>(cls.get())))
    return false;
  // UUID.int through UUID's own slot descriptor (a subclass's property does not run).
  ref slot(check(PyObject_GetAttrString(cls.get(), "int")));
  descrgetfunc get = Py_TYPE(slot.get())->tp_descr_get;
  ref value(check(get ? get(slot.get(), o, cls.get()) : nullptr));
  if (!PyLong_Check(value.get())) {
    PyErr_SetString(PyExc_TypeError, "UUID.int is not an int");
    throw py_error{};
  }
  auto* int_type = reinterpret_cast<PyObject*>(&PyLong_Type);
  ref bytes(check(PyObject_CallMethod(int_type, "to_bytes", "Ons", value.get(),
                                      Py_ssize_t{uuid_bytes}, "big")));
  out.kind = kind_uuid;
  out.payload.assign(PyBytes_AS_STRING(bytes.get()), uuid_bytes);
  return true;
}

bool encode_enum(PyObject* o, scalar_encoding& out) {
  ref cls = imported_class("enum", "Enum", false);
  if (!cls.get() || !PyObject_TypeCheck(o, reinterpret_cast<PyTypeObject*>(cls.get())))
    return false;
  ref name(check(PyUnicode_FromString("_value_")));
  out.replacement = ref(check(PyObject_GenericGetAttr(o, name.get())));
  return true;
}

// datetime.timezone(timedelta(microseconds=us)) (timezone.utc for 0), or None when not aware.
ref tzinfo_of(const PyDateTime_CAPI* api, std::uint8_t flags, std::int64_t us) {
  if (!(flags & flag_aware)) return ref((Py_INCREF(Py_None), Py_None));
  if (us == 0) return ref((Py_INCREF(api->TimeZone_UTC), api->TimeZone_UTC));
  ref delta(check(api->Delta_FromDelta(0, static_cast<int>(us / us_per_second),
                                       static_cast<int>(us % us_per_second), 1, api->DeltaType)));
  return ref(check(api->TimeZone_FromTimeZone(delta.get(), nullptr)));
}

PyObject* from_node(const node_header* n) {
  switch (n->kind) {
    case kind_datetime: {
      const PyDateTime_CAPI* api = datetime_api();
      const auto v = scalar_payload<frozen_datetime>(n);
      ref tz = tzinfo_of(api, n->flags, v.utc_offset_us);
      return api->DateTime_FromDateAndTimeAndFold(v.year, v.month, v.day, v.hour, v.minute,
                                                  v.second, static_cast<int>(v.microsecond),
                                                  tz.get(), v.fold, api->DateTimeType);
    }
    case kind_date: {
      const PyDateTime_CAPI* api = datetime_api();
      const auto v = scalar_payload<frozen_date>(n);
      return api->Date_FromDate(v.year, v.month, v.day, api->DateType);
    }
    case kind_time: {
      const PyDateTime_CAPI* api = datetime_api();
      const auto v = scalar_payload<frozen_time>(n);
      ref tz = tzinfo_of(api, n->flags, v.utc_offset_us);
      return api->Time_FromTimeAndFold(v.hour, v.minute, v.second, static_cast<int>(v.microsecond),
                                       tz.get(), v.fold, api->TimeType);
    }
    case kind_timedelta: {
      const PyDateTime_CAPI* api = datetime_api();
      const auto v = scalar_payload<frozen_timedelta>(n);
      return api->Delta_FromDelta(v.days, v.seconds, v.microseconds, 1, api->DeltaType);
    }
    // The bytes are copied out before the import, which may run Python code.
    case kind_decimal: {
      ref text(check(PyUnicode_FromStringAndSize(node_bytes(n), n->count)));
      ref cls = imported_class("decimal", "Decimal", true);
      return PyObject_CallOneArg(cls.get(), text.get());
    }
    case kind_uuid: {
      ref kwargs(check(Py_BuildValue("{s:y#}", "bytes", node_bytes(n), Py_ssize_t{uuid_bytes})));
      ref args(check(PyTuple_New(0)));
      ref cls = imported_class("uuid", "UUID", true);
      return PyObject_Call(cls.get(), args.get(), kwargs.get());
    }
    default: break;
  }
  PyErr_Format(PyExc_SystemError, "permafrost: corrupt frozen value (kind %d)", int{n->kind});
  return nullptr;
}

}  // namespace

bool encode_scalar(PyObject* o, scalar_encoding& out) {
  return encode_datetime(datetime_api(), o, out) || encode_decimal(o, out) || encode_uuid(o, out) ||
         encode_enum(o, out);
}

ref enum_member_value(PyObject* o) {
  scalar_encoding e;
  if (!encode_enum(o, e)) return ref();
  return std::move(e.replacement);
}

void append_encoded_json(const scalar_encoding& e, std::string& out) {
  std::vector<word> node(1 + (e.payload.size() + 7) / 8);  // 8-aligned, as frozen nodes are
  const node_header h{e.kind, e.flags, 0, static_cast<std::uint32_t>(e.payload.size())};
  std::memcpy(node.data(), &h, sizeof h);
  std::memcpy(node.data() + 1, e.payload.data(), e.payload.size());
  append_scalar_json(reinterpret_cast<const node_header*>(node.data()), out);
}

PyObject* scalar_from_node(const node_header* n) {
  try {
    return from_node(n);
  } catch (const py_error&) {
    return nullptr;
  } catch (const std::bad_alloc&) {
    return PyErr_NoMemory();
  }
}

}  // namespace permafrost::python
