// A translation unit compiled with NDEBUG (checks_default_debug.cpp: without). The default of
// arena_options::freeze_checks must not depend on the consumer's NDEBUG.
#ifndef NDEBUG
#define NDEBUG 1
#endif
#define PERMAFROST_CHECKS_DEFAULT_FN freeze_checks_default_ndebug
#include "checks_default_tu.hpp"
