// portico: configuration — version, backend selection and the library's macros.
#pragma once

// The one version number of the project; CMakeLists.txt reads it from here.
#define PORTICO_VERSION_MAJOR 0
#define PORTICO_VERSION_MINOR 1
#define PORTICO_VERSION_PATCH 0
#define PORTICO_VERSION (PORTICO_VERSION_MAJOR * 10000 + PORTICO_VERSION_MINOR * 100 + PORTICO_VERSION_PATCH)

// Backend selection, the one #if ladder: exactly one of these is 1. The
// platform-neutral layers (coro, buffers, framing, addresses) build
// everywhere; io_context and net/ need a backend, which
// <portico/detail/backend.hpp> brings in (see docs/design/layout.md).
// PORTICO_EXPERIMENTAL_URING (defined by the including project) selects the
// Linux io_uring backend, which is still experimental (docs/design/uring.md).
#if defined(_WIN32)
#define PORTICO_BACKEND_IOCP 1
#define PORTICO_BACKEND_URING 0
#define PORTICO_BACKEND_NONE 0
#elif defined(__linux__) && defined(PORTICO_EXPERIMENTAL_URING)
#define PORTICO_BACKEND_IOCP 0
#define PORTICO_BACKEND_URING 1
#define PORTICO_BACKEND_NONE 0
#else
#define PORTICO_BACKEND_IOCP 0
#define PORTICO_BACKEND_URING 0
#define PORTICO_BACKEND_NONE 1
#endif

#if __cplusplus < 202002L && !(defined(_MSVC_LANG) && _MSVC_LANG >= 202002L)
#error "portico requires C++20"
#endif

// PORTICO_TRACK_FRAMES: when defined (to anything) by the including project,
// every coroutine frame portico allocates is counted, so tests can prove that
// nothing leaks (see portico::debug::live_frames). Define it for a whole
// target, never for a single translation unit.

#define PORTICO_NAMESPACE_BEGIN                                                                                        \
    namespace portico {                                                                                                \
    inline namespace v0 {
#define PORTICO_NAMESPACE_END                                                                                          \
    }                                                                                                                  \
    }
