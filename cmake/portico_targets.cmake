# Settings for portico's own targets (tests, examples, benchmarks) only.
# Nothing here reaches a consumer of the portico target.
include_guard(GLOBAL)

find_package(Threads REQUIRED)

# Windows builds under Wine: every test program runs with a Wine prefix inside
# this build tree. The prefix is set for every cross build, because the
# scripts that start example servers and consumers (tests/drivers/*.sh) and the
# wine.start/wine.stop fixture take it as an argument whichever runner ctest
# uses. The runner is scripts/wine-run.sh unless the toolchain brought its own
# (the MSVC-ABI sysroot's does: wine64 with the same prefix,
# <build>/wineprefix); a toolchain's runner is kept.
if(WIN32 AND CMAKE_CROSSCOMPILING)
  set(PORTICO_WINE_PREFIX "${CMAKE_BINARY_DIR}/wineprefix")
  if(NOT CMAKE_CROSSCOMPILING_EMULATOR)
    set(CMAKE_CROSSCOMPILING_EMULATOR "${PROJECT_SOURCE_DIR}/scripts/wine-run.sh;${PORTICO_WINE_PREFIX}")
  endif()
endif()

function(portico_configure_target target)
  if(MSVC)
    # cl.exe and clang-cl. /permissive-: standard conformance (two-phase
    # lookup, no binding of temporaries to non-const references);
    # /Zc:__cplusplus: __cplusplus says which standard is in use (cl.exe
    # reports 199711L without it); /utf-8: sources and string literals are
    # UTF-8 whatever the machine's code page.
    target_compile_options(${target} PRIVATE /W4 /WX /permissive- /Zc:__cplusplus /utf-8)
  else()
    target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor
      -Wold-style-cast -Wcast-align -Woverloaded-virtual -Werror)
    if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
      # GCC 12 reports a false mismatched-new-delete for coroutine frames whose
      # promise defines its own operator new/delete (PORTICO_TRACK_FRAMES).
      target_compile_options(${target} PRIVATE -Wno-mismatched-new-delete)
    endif()
  endif()
  if(PORTICO_SANITIZE STREQUAL "address")
    target_compile_options(${target} PRIVATE -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all)
    target_link_options(${target} PRIVATE -fsanitize=address,undefined)
  elseif(PORTICO_SANITIZE STREQUAL "thread")
    target_compile_options(${target} PRIVATE -fsanitize=thread -fno-omit-frame-pointer)
    target_link_options(${target} PRIVATE -fsanitize=thread)
  endif()
  set_target_properties(${target} PROPERTIES CXX_EXTENSIONS OFF)
  target_link_libraries(${target} PRIVATE portico::portico Threads::Threads)
endfunction()

# portico_host_headers(OUT_VAR PROBE file PACKAGE deb ENTRIES entry...)
# Finds host-installed, platform-neutral headers (Catch2, Asio) and exposes
# only the named entries through a directory of links in the build tree, set
# into OUT_VAR: adding /usr/include itself would pull the host's headers into
# a cross build.
function(portico_host_headers out_var)
  cmake_parse_arguments(PARSE_ARGV 1 arg "" "PROBE;PACKAGE" "ENTRIES")
  string(MAKE_C_IDENTIFIER "PORTICO_HOST_${arg_PROBE}" cache_var)
  find_path(${cache_var} "${arg_PROBE}"
    PATHS /usr/include /usr/local/include
    NO_CMAKE_FIND_ROOT_PATH
    DOC "Directory holding ${arg_PROBE} (Debian: apt-get install ${arg_PACKAGE})")
  if(NOT ${cache_var})
    message(FATAL_ERROR "${arg_PROBE} not found: run scripts/setup.sh (or apt-get install ${arg_PACKAGE})")
  endif()
  string(MAKE_C_IDENTIFIER "${arg_PACKAGE}" dir_name)
  set(dir "${CMAKE_CURRENT_BINARY_DIR}/host-${dir_name}")
  file(MAKE_DIRECTORY "${dir}")
  foreach(entry IN LISTS arg_ENTRIES)
    file(CREATE_LINK "${${cache_var}}/${entry}" "${dir}/${entry}" SYMBOLIC)
  endforeach()
  set(${out_var} "${dir}" PARENT_SCOPE)
endfunction()
