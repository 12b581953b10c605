// Includes Catch2: Debian's v2 single header, or v3 where that is what is installed.
#pragma once

#if __has_include(<catch2/catch.hpp>)
#include <catch2/catch.hpp>
#elif __has_include(<catch2/catch_all.hpp>)
#include <catch2/catch_all.hpp>
#else
#error "Catch2 not found: run scripts/setup.sh"
#endif
