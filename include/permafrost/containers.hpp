// permafrost — the frozen containers, all of them: string, array, hash_map, hash_set, sorted_map,
// intern_pool, with offset_ptr and the storability and position-independence checks. Each is
// also usable through its own header.
#pragma once

#include "permafrost/array.hpp"
#include "permafrost/entry.hpp"
#include "permafrost/frozen_storable.hpp"
#include "permafrost/hash.hpp"
#include "permafrost/hash_map.hpp"
#include "permafrost/hash_set.hpp"
#include "permafrost/intern_pool.hpp"
#include "permafrost/offset_ptr.hpp"
#include "permafrost/sorted_map.hpp"
#include "permafrost/string.hpp"
