// permafrost — the frozen containers, all of them: string, array, hash_map, hash_set, sorted_map,
// intern_pool. Each is also usable through its own header.
#pragma once

#include "permafrost/array.hpp"
#include "permafrost/hash.hpp"
#include "permafrost/hash_map.hpp"
#include "permafrost/hash_set.hpp"
#include "permafrost/intern_pool.hpp"
#include "permafrost/sorted_map.hpp"
#include "permafrost/string.hpp"
