// Catch2's main, compiled once for every test program (Catch2 v2 or v3).
#if defined(PORTICO_CATCH2_V3)
#include "support/catch.hpp"

int main(int argc, char* argv[]) { return Catch::Session().run(argc, argv); }
#else
#define CATCH_CONFIG_MAIN
#include "support/catch.hpp"
#endif
