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

std::string step_text(const value_path_step& s) {
  switch (s.kind) {
    case value_path_kind::value_of: return "[" + key_text(s.key) + "]";
    case value_path_kind::at_index: return "[" + std::to_string(s.index) + "]";
    case value_path_kind::key_of: return ".keys()[" + std::to_string(s.index) + "]";
    case value_path_kind::element: return "{element " + std::to_string(s.index) + "}";
  }
  return "?";
}

// "obj" and the text of each step i of n (text(i)), shortened when n > path_shown_steps.
template <class Text>
std::string shortened(std::size_t n, Text text) {
  std::string p = "obj";
  if (n <= path_shown_steps) {
    for (std::size_t i = 0; i < n; ++i) p += text(i);
    return p;
  }
  for (std::size_t i = 0; i < path_edge_steps; ++i) p += text(i);
  p += "...(" + std::to_string(n - 2 * path_edge_steps) + " more)...";
  for (std::size_t i = n - path_edge_steps; i < n; ++i) p += text(i);
  return p;
}

}  // namespace

std::string path_text(const std::vector<value_path_step>& steps) {
  return shortened(steps.size(), [&](std::size_t i) { return step_text(steps[i]); });
}

std::string joined_path(const std::vector<std::string>& parts) {
  return shortened(parts.size(), [&](std::size_t i) -> const std::string& { return parts[i]; });
}

}  // namespace permafrost::python
