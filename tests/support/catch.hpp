// Includes Catch2: v3 (find_package, e.g. from vcpkg or Conan) when the build
// found it and defined PORTICO_CATCH2_V3, else v2's single header (Debian's
// catch2 package). The macro, not __has_include, decides: a native build
// against v3 must not pick up a v2 header that also sits in /usr/include.
#pragma once

#if defined(PORTICO_CATCH2_V3)
#include <catch2/catch_all.hpp>
#elif __has_include(<catch2/catch.hpp>)
#include <catch2/catch.hpp>
#else
#error "Catch2 not found: run scripts/setup.sh (Debian), or install Catch2 v3 (see docs/platform-notes.md)"
#endif
