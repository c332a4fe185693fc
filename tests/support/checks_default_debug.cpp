// A translation unit compiled without NDEBUG (checks_default_ndebug.cpp: with).
#undef NDEBUG
#define PERMAFROST_CHECKS_DEFAULT_FN freeze_checks_default_debug
#include "checks_default_tu.hpp"
