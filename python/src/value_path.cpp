// permafrost for Python — value paths for error messages (contract in value_path.hpp).
#include "value_path.hpp"

#include <string_view>

#include "keys.hpp"
#include "py_ref.hpp"

namespace permafrost::python {

namespace {

std::string key_text(PyObject* k) {
  if (PyUnicode_Check(k)) {
    std::string_view s;
    ref holder;
    if (utf8_of(k, s, holder)) {
      std::string out = "\"";
      for (char c : s) {
        if (c == '"' || c == '\\') out += '\\';
        out += c;
      }
      return out + "\"";
    }
    PyErr_Clear();
  }
  ref r(PyObject_Repr(k));
  const char* text = r.get() ? PyUnicode_AsUTF8(r.get()) : nullptr;
  if (!text) {
    PyErr_Clear();
    return "?";
  }
  return text;
}

}  // namespace

std::string path_text(const std::vector<value_path_step>& steps) {
  std::string p = "obj";
  for (const value_path_step& s : steps) {
    switch (s.kind) {
      case value_path_kind::value_of: p += "[" + key_text(s.key) + "]"; break;
      case value_path_kind::at_index: p += "[" + std::to_string(s.index) + "]"; break;
      case value_path_kind::key_of: p += ".keys()[" + std::to_string(s.index) + "]"; break;
      case value_path_kind::element: p += "{element " + std::to_string(s.index) + "}"; break;
    }
  }
  return p;
}

}  // namespace permafrost::python
