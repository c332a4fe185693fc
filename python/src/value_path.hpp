// permafrost for Python — where a value sits inside the object being frozen, for error messages.
//
// Contract: freeze() and freeze_native() keep a stack of steps as they walk; path_text() renders
// it the way both name an unsupported value, a cycle or too deep a nesting:
// obj["users"][3]["created"], obj[...].keys()[i] for a key, obj[...]{element i} for a set
// element. A str key is written in double quotes (its UTF-8, lone surrogates included), any
// other key by its repr (which may run the key's __repr__). A path of more than
// path_shown_steps steps (5000 levels deep, the message was 30 KB) shows its first and last
// path_edge_steps with "...(N more)..." between; only the steps shown are rendered (the reprs
// of the others never run). joined_path() does the same for paths made of ready texts (dumps).
//
// Thread safety: under the GIL.
#pragma once

#include <Python.h>

#include <string>
#include <vector>

namespace permafrost::python {

enum class value_path_kind { value_of, at_index, key_of, element };

struct value_path_step {
  value_path_kind kind;
  PyObject* key;  // value_of: the dict key; the walker keeps it alive while the step is on
  Py_ssize_t index;
};

inline constexpr std::size_t path_edge_steps = 8;
inline constexpr std::size_t path_shown_steps = 2 * path_edge_steps;

// "obj" followed by each step (shortened as above). Never fails: an unprintable key is written
// "?".
std::string path_text(const std::vector<value_path_step>& steps);

// "obj" followed by `parts` in order (each a rendered step such as `[3]`), shortened as above.
std::string joined_path(const std::vector<std::string>& parts);

}  // namespace permafrost::python
